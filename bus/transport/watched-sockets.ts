/**
 * Sockets whose events (handshakes) are watched, and how to close them.
 * A watched socket has a monitor: an inproc pipe inside libzmq to a PAIR
 * socket the observer reads. When the socket closes, libzmq ends that pipe
 * in a handshake with the PAIR side, which only the observer's reads drive.
 * zeromq.js drops its hold on the observer as the socket closes, so the
 * garbage collector could close the PAIR mid-handshake, and libzmq 4.3.5
 * then aborts the whole process ("_state == term_ack_sent ||
 * _state == term_req_sent2", pipe.cpp:355; seen in about one run in three
 * of the CURVE specs). So a closed socket's observer is held here, still
 * reading, until its monitor says it stopped (`end`), or a bounded while.
 * Closing the observer first instead leaves the socket's own end of the
 * pipe waiting, and the socket never lets its connections go.
 */
import type * as zmq from 'zeromq';

/** How long a closed socket's observer is kept at most, waiting for its monitor to stop. */
const OBSERVER_HOLD_MS = 5000;

const watched = new WeakSet<zmq.Socket>();
const held = new Set<zmq.Observer>();

/** The socket's event observer, created now if need be; close the socket with closeSocket. */
export function watch(socket: zmq.Socket): zmq.Observer {
  watched.add(socket);
  return socket.events;
}

/** Closes the socket; a watched one's observer is held until its monitor has stopped. */
export function closeSocket(socket: zmq.Socket): void {
  if (watched.has(socket) && !socket.closed) {
    const observer = socket.events;
    if (!observer.closed) {
      held.add(observer);
      const timer = setTimeout(() => {
        held.delete(observer);
        if (!observer.closed) observer.close();
      }, OBSERVER_HOLD_MS);
      timer.unref();
      observer.on('end', () => {
        clearTimeout(timer);
        held.delete(observer);
      });
    }
  }
  socket.close();
}
