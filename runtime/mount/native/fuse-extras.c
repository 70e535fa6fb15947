/*
 * fuse_extras: fcntl (POSIX) and flock locks on @cocalc/fuse-native mounts,
 * handed to JavaScript (runtime/mount/fuse-extras.ts is the only user).
 *
 * fuse-native gives libfuse no lock or flock operation, so the kernel keeps
 * those locks on this host. Loaded with RTLD_GLOBAL before fuse.node, this
 * addon defines fuse_new and fuse_destroy, and fuse.node's references bind
 * here. Our fuse_new adds lock, flock and a release wrapper to the operations
 * it is given and calls libfuse's own fuse_new (dlvsym RTLD_NEXT); libfuse,
 * seeing the operations, asks the kernel for remote POSIX and flock locks.
 * libfuse itself turns every flush (each close) into an F_UNLCK of the whole
 * file for the closer's lock owner; the release wrapper turns the kernel's
 * flock_release into a flock unlock. Our fuse_new also marks /dev/fuse
 * close-on-exec, which libfuse 2.9 does not, and wraps open and create to
 * choose each file's caching (choose_caching): fuse-native cannot set
 * direct_io per file.
 *
 * A lock call runs on a FUSE worker thread: it queues a request for the
 * mount's JavaScript dispatcher (a threadsafe function) and sleeps until
 * reply(id, errno, conflict?) answers it. While it sleeps it looks every
 * WAIT_POLL_MS for a kernel interrupt (a signal to the locking process) or
 * the end of the FUSE session, and then tells the dispatcher once with an
 * abort event. An interrupted call still waits for its answer (the lock may
 * have been granted meanwhile); one whose session ended answers -EIO itself.
 */
#define _GNU_SOURCE
#define FUSE_USE_VERSION 29

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <fuse_lowlevel.h>
#include <node_api.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#define WAIT_POLL_MS 100

typedef struct fuse *(*fuse_new_fn)(struct fuse_chan *, struct fuse_args *, const struct fuse_operations *,
                                    size_t, void *);
typedef void (*fuse_destroy_fn)(struct fuse *);
typedef int (*release_fn)(const char *, struct fuse_file_info *);
typedef int (*open_fn)(const char *, struct fuse_file_info *);
typedef int (*create_fn)(const char *, mode_t, struct fuse_file_info *);

/* One install() call: the threadsafe function that reaches its dispatcher. It
 * holds one thread reference while it is the current handler and one for
 * each mount bound to it. */
typedef struct handler {
  napi_threadsafe_function tsfn;
  int mounts;
  int closed;    /* the function refused a call or was finalized: call it no more */
  int finalized; /* Node has let go of it: freed once no mount is bound */
} handler_t;

/* A fuse_new that went through us, until its fuse_destroy. */
typedef struct mount {
  struct fuse *fuse;
  handler_t *handler;
  release_fn release; /* fuse-native's own, or NULL */
  open_fn open;       /* fuse-native's own, or NULL */
  create_fn create;   /* fuse-native's own, or NULL */
  struct mount *next;
} mount_t;

static mount_t *current_mount(void);

/* A lock call sleeping on its FUSE thread until JavaScript answers it. */
typedef struct waiter {
  uint64_t id;
  handler_t *handler;
  int answered;
  int err;
  struct flock conflict; /* F_GETLK's answer */
  pthread_cond_t cond;
  struct waiter *next;
} waiter_t;

typedef enum { EVENT_POSIX, EVENT_FLOCK, EVENT_UTIMENS, EVENT_ABORT } event_kind_t;

/* What one call of the dispatcher carries; the dispatcher frees it. */
typedef struct event {
  event_kind_t kind;
  uint64_t id;
  char *path;
  uint64_t fh;
  uint64_t owner;
  int cmd;    /* POSIX: F_GETLK, F_SETLK or F_SETLKW */
  short type; /* POSIX: F_RDLCK, F_WRLCK or F_UNLCK */
  int64_t start;
  int64_t len;
  pid_t pid;
  int op; /* flock: LOCK_SH, LOCK_EX or LOCK_UN, maybe with LOCK_NB */
  struct timespec times[2]; /* utimens: atime, mtime; tv_nsec may be UTIME_NOW or UTIME_OMIT */
} event_t;

/* Guards everything below, and every handler_t and waiter_t field. */
static pthread_mutex_t state = PTHREAD_MUTEX_INITIALIZER;
static handler_t *current_handler;
static mount_t *mounts;
static waiter_t *waiters;
static uint64_t last_id;

static pthread_once_t libfuse_once = PTHREAD_ONCE_INIT;
static fuse_new_fn libfuse_new;
static fuse_destroy_fn libfuse_destroy;

/* fuse.node asks for fuse_new@FUSE_2.6 and fuse_destroy@FUSE_2.2. */
static void find_libfuse(void) {
  libfuse_new = (fuse_new_fn)dlvsym(RTLD_NEXT, "fuse_new", "FUSE_2.6");
  libfuse_destroy = (fuse_destroy_fn)dlvsym(RTLD_NEXT, "fuse_destroy", "FUSE_2.2");
}

static void free_handler_if_done(handler_t *h) {
  if (h->finalized && h->mounts == 0) free(h);
}

static mount_t *mount_of(struct fuse *fuse) {
  for (mount_t *m = mounts; m != NULL; m = m->next)
    if (m->fuse == fuse) return m;
  return NULL;
}

/* Gives the mount's thread reference back; under `state`. */
static void unbind(mount_t *mount) {
  handler_t *h = mount->handler;
  h->mounts--;
  if (!h->closed) napi_release_threadsafe_function(h->tsfn, napi_tsfn_release);
  free_handler_if_done(h);
  free(mount);
}

/* A mount bound to the current handler, or NULL when there is none. */
static mount_t *bind_current(void) {
  mount_t *mount = NULL;
  pthread_mutex_lock(&state);
  handler_t *h = current_handler;
  if (h != NULL && !h->closed && napi_acquire_threadsafe_function(h->tsfn) == napi_ok) {
    mount = calloc(1, sizeof *mount);
    if (mount != NULL) {
      mount->handler = h;
      h->mounts++;
    } else {
      napi_release_threadsafe_function(h->tsfn, napi_tsfn_release);
    }
  }
  pthread_mutex_unlock(&state);
  return mount;
}

static event_t *new_event(event_kind_t kind, const char *path, const struct fuse_file_info *fi) {
  event_t *event = calloc(1, sizeof *event);
  if (event == NULL) return NULL;
  event->kind = kind;
  event->path = strdup(path != NULL ? path : "");
  if (event->path == NULL) {
    free(event);
    return NULL;
  }
  if (fi != NULL) {
    event->fh = fi->fh;
    event->owner = fi->lock_owner;
  }
  return event;
}

static void free_event(event_t *event) {
  free(event->path);
  free(event);
}

/* Queues the event for the handler's dispatcher, which then owns it; under `state`. */
static int send_event(handler_t *h, event_t *event) {
  napi_status status = napi_call_threadsafe_function(h->tsfn, event, napi_tsfn_nonblocking);
  if (status == napi_ok) return 1;
  if (status == napi_closing) h->closed = 1;
  free_event(event);
  return 0;
}

static void abort_waiter(waiter_t *w) {
  event_t *abort_event = new_event(EVENT_ABORT, NULL, NULL);
  if (abort_event == NULL) return;
  abort_event->id = w->id;
  send_event(w->handler, abort_event);
}

/* Hands the event to JavaScript and sleeps until it is answered; the result
 * is 0 or a negative errno, and for F_GETLK the conflict in *conflict. */
static int ask(event_t *event, struct flock *conflict) {
  struct fuse *fuse = fuse_get_context()->fuse;
  struct fuse_session *session = fuse_get_session(fuse);
  waiter_t w;
  memset(&w, 0, sizeof w);
  w.err = -EIO;
  w.conflict.l_type = F_UNLCK;
  pthread_condattr_t attr;
  pthread_condattr_init(&attr);
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  pthread_cond_init(&w.cond, &attr);
  pthread_condattr_destroy(&attr);

  pthread_mutex_lock(&state);
  mount_t *mount = mount_of(fuse);
  w.handler = mount != NULL ? mount->handler : NULL;
  if (w.handler == NULL || w.handler->closed) {
    free_event(event);
  } else {
    w.id = event->id = ++last_id;
    if (send_event(w.handler, event)) {
      w.next = waiters;
      waiters = &w;
      int aborted = 0;
      while (!w.answered && !w.handler->closed) {
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_nsec += WAIT_POLL_MS * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
          deadline.tv_sec++;
          deadline.tv_nsec -= 1000000000L;
        }
        /* Not a cancellation point here: libfuse's workers cancel only while receiving. */
        pthread_cond_timedwait(&w.cond, &state, &deadline);
        if (w.answered || w.handler->closed) break;
        int ended = fuse_session_exited(session);
        if (!aborted && (ended || fuse_interrupted())) {
          aborted = 1;
          abort_waiter(&w);
        }
        if (ended) break;
      }
      for (waiter_t **p = &waiters; *p != NULL; p = &(*p)->next) {
        if (*p == &w) {
          *p = w.next;
          break;
        }
      }
    }
  }
  pthread_mutex_unlock(&state);
  pthread_cond_destroy(&w.cond);
  *conflict = w.conflict;
  return w.err;
}

static int lock_op(const char *path, struct fuse_file_info *fi, int cmd, struct flock *lock) {
  event_t *event = new_event(EVENT_POSIX, path, fi);
  if (event == NULL) return -ENOMEM;
  event->cmd = cmd;
  event->type = lock->l_type;
  event->start = lock->l_start;
  event->len = lock->l_len;
  /* The kernel names the locker for set requests; otherwise the caller. */
  event->pid = lock->l_pid != 0 ? lock->l_pid : fuse_get_context()->pid;
  struct flock conflict;
  int err = ask(event, &conflict);
  if (err == 0 && cmd == F_GETLK) {
    lock->l_type = conflict.l_type;
    if (conflict.l_type != F_UNLCK) {
      lock->l_whence = SEEK_SET;
      lock->l_start = conflict.l_start;
      lock->l_len = conflict.l_len;
      lock->l_pid = conflict.l_pid;
    }
  }
  return err;
}

static int flock_op(const char *path, struct fuse_file_info *fi, int op) {
  event_t *event = new_event(EVENT_FLOCK, path, fi);
  if (event == NULL) return -ENOMEM;
  event->op = op;
  struct flock unused;
  return ask(event, &unused);
}

/* fuse-native hands its utimens handler the access time twice (the
 * modification time is lost) and turns UTIME_OMIT and UTIME_NOW into dates;
 * this one hands both times over as they are. */
static int utimens_op(const char *path, const struct timespec tv[2]) {
  event_t *event = new_event(EVENT_UTIMENS, path, NULL);
  if (event == NULL) return -ENOMEM;
  event->times[0] = tv[0];
  event->times[1] = tv[1];
  struct flock unused;
  return ask(event, &unused);
}

/* libfuse 2.9 passes the kernel's flock_release on to release only. */
static int release_op(const char *path, struct fuse_file_info *fi) {
  if (fi->flock_release) flock_op(path, fi, LOCK_UN);
  mount_t *mount = current_mount();
  return mount != NULL && mount->release != NULL ? mount->release(path, fi) : 0;
}

/* The mount of the calling FUSE thread's request (NULL if it did not go through us). */
static mount_t *current_mount(void) {
  pthread_mutex_lock(&state);
  mount_t *mount = mount_of(fuse_get_context()->fuse);
  pthread_mutex_unlock(&state);
  return mount;
}

/* A file opened for writing bypasses the kernel's page cache (direct I/O):
 * a program that keeps it open (sqlite3) then reads what other mounts wrote
 * since, not pages its kernel kept. One opened only to read keeps the cache,
 * dropped at every open (close-to-open). */
static void choose_caching(struct fuse_file_info *fi) {
  if ((fi->flags & O_ACCMODE) != O_RDONLY) fi->direct_io = 1;
}

static int open_op(const char *path, struct fuse_file_info *fi) {
  mount_t *mount = current_mount();
  int res = mount != NULL && mount->open != NULL ? mount->open(path, fi) : -ENOSYS;
  if (res == 0) choose_caching(fi);
  return res;
}

static int create_op(const char *path, mode_t mode, struct fuse_file_info *fi) {
  mount_t *mount = current_mount();
  int res = mount != NULL && mount->create != NULL ? mount->create(path, mode, fi) : -ENOSYS;
  if (res == 0) choose_caching(fi);
  return res;
}

struct fuse *fuse_new(struct fuse_chan *ch, struct fuse_args *args, const struct fuse_operations *op,
                      size_t op_size, void *user_data) {
  pthread_once(&libfuse_once, find_libfuse);
  if (libfuse_new == NULL || libfuse_destroy == NULL) return NULL;
  /* libfuse 2.9 leaves /dev/fuse open across exec: a child holding it keeps
   * the connection alive after this process dies, and a child blocked on
   * the mount then never returns. */
  int fd = fuse_chan_fd(ch);
  if (fd >= 0) fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
  mount_t *mount = bind_current();
  if (mount == NULL) return libfuse_new(ch, args, op, op_size, user_data);

  struct fuse_operations ops;
  memset(&ops, 0, sizeof ops);
  memcpy(&ops, op, op_size < sizeof ops ? op_size : sizeof ops);
  mount->release = ops.release;
  mount->open = ops.open;
  mount->create = ops.create;
  ops.lock = lock_op;
  ops.flock = flock_op;
  ops.release = release_op;
  if (ops.open != NULL) ops.open = open_op;
  if (ops.create != NULL) ops.create = create_op;
  if (ops.utimens != NULL) {
    ops.utimens = utimens_op;
    /* Else libfuse calls utimens only when both times are set, and makes UTIME_NOW a date itself. */
    ops.flag_utime_omit_ok = 1;
  }
  struct fuse *fuse = libfuse_new(ch, args, &ops, sizeof ops, user_data);

  pthread_mutex_lock(&state);
  if (fuse != NULL) {
    mount->fuse = fuse;
    mount->next = mounts;
    mounts = mount;
  } else {
    unbind(mount);
  }
  pthread_mutex_unlock(&state);
  return fuse;
}

/* Runs after fuse_loop_mt has joined its workers: no lock call is in flight. */
void fuse_destroy(struct fuse *f) {
  pthread_once(&libfuse_once, find_libfuse);
  if (libfuse_destroy == NULL) return;
  libfuse_destroy(f);
  pthread_mutex_lock(&state);
  for (mount_t **p = &mounts; *p != NULL; p = &(*p)->next) {
    if ((*p)->fuse == f) {
      mount_t *mount = *p;
      *p = mount->next;
      unbind(mount);
      break;
    }
  }
  pthread_mutex_unlock(&state);
}

static const char *posix_cmd_name(int cmd) {
  switch (cmd) {
    case F_GETLK: return "getlk";
    case F_SETLKW: return "setlkw";
    default: return "setlk";
  }
}

static const char *posix_type_name(short type) {
  switch (type) {
    case F_RDLCK: return "read";
    case F_WRLCK: return "write";
    default: return "unlock";
  }
}

static const char *flock_op_name(int op) {
  switch (op & ~LOCK_NB) {
    case LOCK_SH: return "shared";
    case LOCK_EX: return "exclusive";
    default: return "unlock";
  }
}

static void set_string(napi_env env, napi_value object, const char *key, const char *value) {
  napi_value v;
  napi_create_string_utf8(env, value, NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, object, key, v);
}

static void set_number(napi_env env, napi_value object, const char *key, double value) {
  napi_value v;
  napi_create_double(env, value, &v);
  napi_set_named_property(env, object, key, v);
}

/* A time in ms since the epoch, "now" for UTIME_NOW, null for UTIME_OMIT. */
static void set_time(napi_env env, napi_value object, const char *key, const struct timespec *t) {
  if (t->tv_nsec == UTIME_NOW) {
    set_string(env, object, key, "now");
  } else if (t->tv_nsec == UTIME_OMIT) {
    napi_value null;
    napi_get_null(env, &null);
    napi_set_named_property(env, object, key, null);
  } else {
    set_number(env, object, key, (double)t->tv_sec * 1000.0 + (double)t->tv_nsec / 1e6);
  }
}

static void set_owner(napi_env env, napi_value object, uint64_t owner) {
  napi_value v;
  napi_create_bigint_uint64(env, owner, &v);
  napi_set_named_property(env, object, "owner", v);
}

/* The request as runtime/mount/fuse-extras.ts declares it. */
static napi_value request_object(napi_env env, const event_t *event) {
  napi_value request;
  napi_create_object(env, &request);
  set_string(env, request, "kind", event->kind == EVENT_POSIX ? "posix" : event->kind == EVENT_FLOCK ? "flock" : "utimens");
  set_string(env, request, "path", event->path);
  if (event->kind == EVENT_UTIMENS) {
    set_time(env, request, "atimeMs", &event->times[0]);
    set_time(env, request, "mtimeMs", &event->times[1]);
    return request;
  }
  set_number(env, request, "fh", (double)event->fh);
  if (event->kind == EVENT_POSIX) {
    set_string(env, request, "cmd", posix_cmd_name(event->cmd));
    set_string(env, request, "type", posix_type_name(event->type));
    set_number(env, request, "start", (double)event->start);
    set_number(env, request, "len", (double)event->len);
    set_number(env, request, "pid", event->pid);
  } else {
    set_string(env, request, "op", flock_op_name(event->op));
    napi_value nonblock;
    napi_get_boolean(env, (event->op & LOCK_NB) != 0, &nonblock);
    napi_set_named_property(env, request, "nonblock", nonblock);
  }
  set_owner(env, request, event->owner);
  return request;
}

/* Calls dispatch(id, request) for a request and dispatch(id) for an abort. */
static void dispatch(napi_env env, napi_value js_dispatch, void *context, void *data) {
  (void)context;
  event_t *event = data;
  if (env != NULL) {
    napi_value argv[2], undefined;
    napi_get_undefined(env, &undefined);
    napi_create_double(env, (double)event->id, &argv[0]);
    size_t argc = 1;
    if (event->kind != EVENT_ABORT) argv[argc++] = request_object(env, event);
    napi_call_function(env, undefined, js_dispatch, argc, argv, NULL);
  }
  free_event(event);
}

/* Node let go of the function: waiters bound to it answer -EIO. */
static void finalize_handler(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  handler_t *h = data;
  pthread_mutex_lock(&state);
  h->closed = 1;
  h->finalized = 1;
  if (current_handler == h) current_handler = NULL;
  for (waiter_t *w = waiters; w != NULL; w = w->next)
    if (w->handler == h) pthread_cond_signal(&w->cond);
  free_handler_if_done(h);
  pthread_mutex_unlock(&state);
}

/* install(dispatch): mounts made from now on send their lock calls to dispatch. */
static napi_value install(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_valuetype type = napi_undefined;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc >= 1) napi_typeof(env, argv[0], &type);
  if (type != napi_function) {
    napi_throw_type_error(env, NULL, "install(dispatch) needs a function");
    return NULL;
  }
  handler_t *h = calloc(1, sizeof *h);
  if (h == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  napi_value name;
  napi_create_string_utf8(env, "fuse_extras", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, h, finalize_handler, NULL, dispatch,
                                      &h->tsfn) != napi_ok) {
    free(h);
    napi_throw_error(env, NULL, "could not create the threadsafe function");
    return NULL;
  }
  napi_unref_threadsafe_function(env, h->tsfn);
  pthread_mutex_lock(&state);
  handler_t *old = current_handler;
  current_handler = h;
  if (old != NULL && !old->closed) napi_release_threadsafe_function(old->tsfn, napi_tsfn_release);
  pthread_mutex_unlock(&state);
  return NULL;
}

/* The conflict object of reply's third argument: { type, start, len, pid }. */
static int read_conflict(napi_env env, napi_value object, struct flock *conflict) {
  napi_value v;
  char type[8] = "";
  int64_t start = 0, len = 0;
  int32_t pid = 0;
  if (napi_get_named_property(env, object, "type", &v) != napi_ok ||
      napi_get_value_string_utf8(env, v, type, sizeof type, NULL) != napi_ok ||
      napi_get_named_property(env, object, "start", &v) != napi_ok ||
      napi_get_value_int64(env, v, &start) != napi_ok ||
      napi_get_named_property(env, object, "len", &v) != napi_ok ||
      napi_get_value_int64(env, v, &len) != napi_ok ||
      napi_get_named_property(env, object, "pid", &v) != napi_ok ||
      napi_get_value_int32(env, v, &pid) != napi_ok)
    return 0;
  if (strcmp(type, "read") == 0) conflict->l_type = F_RDLCK;
  else if (strcmp(type, "write") == 0) conflict->l_type = F_WRLCK;
  else if (strcmp(type, "unlock") == 0) conflict->l_type = F_UNLCK;
  else return 0;
  conflict->l_whence = SEEK_SET;
  conflict->l_start = start;
  conflict->l_len = len;
  conflict->l_pid = pid;
  return 1;
}

/* reply(id, errno, conflict?): answers request id; false when nothing waits for it. */
static napi_value reply(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  double id;
  int32_t err;
  if (argc < 2 || napi_get_value_double(env, argv[0], &id) != napi_ok ||
      napi_get_value_int32(env, argv[1], &err) != napi_ok || err > 0) {
    napi_throw_type_error(env, NULL, "reply(id, errno, conflict?) needs an id and an errno of 0 or below");
    return NULL;
  }
  struct flock conflict;
  memset(&conflict, 0, sizeof conflict);
  conflict.l_type = F_UNLCK;
  napi_valuetype type = napi_undefined;
  if (argc >= 3) napi_typeof(env, argv[2], &type);
  if (type == napi_object && !read_conflict(env, argv[2], &conflict)) {
    napi_throw_type_error(env, NULL, "a conflict is { type: 'read' | 'write' | 'unlock', start, len, pid }");
    return NULL;
  }
  int found = 0;
  pthread_mutex_lock(&state);
  for (waiter_t *w = waiters; w != NULL; w = w->next) {
    if (w->id == (uint64_t)id && !w->answered) {
      w->answered = 1;
      w->err = err;
      w->conflict = conflict;
      pthread_cond_signal(&w->cond);
      found = 1;
      break;
    }
  }
  pthread_mutex_unlock(&state);
  napi_value result;
  napi_get_boolean(env, found, &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "install", NAPI_AUTO_LENGTH, install, NULL, &fn);
  napi_set_named_property(env, exports, "install", fn);
  napi_create_function(env, "reply", NAPI_AUTO_LENGTH, reply, NULL, &fn);
  napi_set_named_property(env, exports, "reply", fn);
  return exports;
}
