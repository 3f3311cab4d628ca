import { loadNative } from "./native.js";

/**
 * Large buffers on transparent huge pages (native/hugebuf.c). A download's range buffers are
 * hundreds of MiB touched for the first time by socket reads on the event loop: with 4 KiB pages
 * that is one page fault per 4 KiB, and on a paravirtualized guest (this project's development
 * VMs) each fault traps to the hypervisor — 256 MiB took 0.73 s of faults there, 0.02–0.44 s on
 * huge pages (docs/benchmarks.md "Large files: range buffers on huge pages"). The kernel honours
 * the advice when /sys/kernel/mm/transparent_hugepage/enabled is `always` or `madvise` (Ubuntu's
 * and Debian's default is `madvise`); elsewhere the memory is ordinary.
 *
 * HSMFLEET_HUGE_PAGES=0 (read once, for measurements) allocates ordinary memory instead.
 */

/** Smallest allocation put on huge pages: below two huge pages the advice buys little. */
export const HUGE_PAGE_BUFFER_MIN_BYTES = 4 * 1024 * 1024;

const hugePagesOff = process.env["HSMFLEET_HUGE_PAGES"] === "0";

/**
 * A buffer of `bytes` (contents undefined) for memory that is written before it is read: on huge
 * pages when it is at least HUGE_PAGE_BUFFER_MIN_BYTES and the mapping succeeds, else
 * Buffer.allocUnsafeSlow. Either way its pages cost nothing until they are touched.
 */
export const allocLargeBuffer = (bytes: number): Buffer => {
  if (!hugePagesOff && bytes >= HUGE_PAGE_BUFFER_MIN_BYTES) {
    const buf = loadNative().hugePageBuffer(bytes);
    if (buf !== null) return buf;
  }
  return Buffer.allocUnsafeSlow(bytes);
};
