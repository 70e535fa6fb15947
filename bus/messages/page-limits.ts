/**
 * The memory engine's wire limits (SPEC.md M7, M11, M22), as plain numbers
 * the `client.page` and `page.` schemas are built from (bus/messages/page.ts,
 * which exports them too). They live in a file of their own, with no zod,
 * because the CLI names them in its help and loads only commander up front
 * (runtime/cli/main.ts): a command must not pay for the schemas to print a
 * usage line.
 */

export const PAGE_SIZE = 4096;
/** Most pages one client read or write carries (1 MiB). */
export const PAGES_PER_REQUEST_MAX = 256;
/** Most core copies a page may ask for (M11). */
export const COPIES_MAX = 8;
/** Most pages one reserve, alloc, unallocate or dealloc call spans. */
export const PAGES_PER_RANGE_MAX = 2 ** 32;
/** Bytes of the file-system attribute every page carries (M7, M22). */
export const FS_ATTR_BYTES = 16;
/** Most bytes one transaction-log record holds. */
export const TXN_RECORD_BYTES_MAX = 4096;
/**
 * Bounds of a lock's lease (M14: a lock held by a client that went away is
 * released): a client that asks for one renews it; its node releases its
 * locks once it has not heard from it for that long.
 */
export const LOCK_LEASE_MS_MIN = 1000;
export const LOCK_LEASE_MS_MAX = 3_600_000;
