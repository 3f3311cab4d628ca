/**
 * Test seams: named points in the data path where an end-to-end test can make the process die
 * (SIGKILL, as a crash or `kill -9` would) or interrupt itself (SIGINT, as Ctrl-C does), to drive a
 * crash window deterministically instead of racing a timer. Inert unless the environment variable
 * HSMFLEET_TEST_SEAM is set when the process starts, as `<seam>:<path suffix>[:<signal>]` (e.g.
 * `stub-before-hsm-xattr:/big/f3`, `chunk-before-complete:big.bin:SIGSTOP`; the signal defaults to
 * SIGKILL): the process sends itself the signal the first time it reaches that seam for a path
 * ending with the suffix. Never set it in production; nothing but tests reads it.
 */
const parse = (
  spec: string | undefined,
): { name: string; suffix: Buffer; signal: NodeJS.Signals } | undefined => {
  const m = spec ? /^([a-z-]+):([^:]+)(?::(SIG[A-Z]+))?$/.exec(spec) : null;
  if (!m) return undefined;
  return {
    name: m[1]!,
    suffix: Buffer.from(m[2]!, "utf8"),
    signal: (m[3] ?? "SIGKILL") as NodeJS.Signals,
  };
};

const seam = parse(process.env["HSMFLEET_TEST_SEAM"]);
let fired = false;

/** The seams that exist, so a test cannot name one that is never reached. */
export type TestSeamName =
  /** Import stub: after the ftruncate to the blob's size, before the HSM state xattr. */
  | "stub-before-hsm-xattr"
  /** Import: a file is created (O_EXCL, empty, 0600), nothing recorded on it yet. */
  | "file-before-record"
  /** Import --mode full: a file's download is about to start. */
  | "import-download-start"
  /** Export of a chunked file: a chunk is uploaded, its completion not yet recorded (KV). */
  | "chunk-before-complete"
  /** Restore (emulation backend): a file's data is written, its times not yet put back. */
  | "restore-data-written"
  /** Restore (emulation backend): a file is restored, its item not yet acknowledged. */
  | "restore-file-done"
  /** Autoimport worker: a change of the blob is about to be applied (path = the blob name). */
  | "autoimport-change-start";

/** Signals this process when HSMFLEET_TEST_SEAM names `name` and `path` ends with its suffix. */
export const testSeam = (name: TestSeamName, path: Buffer): void => {
  if (!seam || fired || seam.name !== name || path.length < seam.suffix.length) return;
  if (!path.subarray(path.length - seam.suffix.length).equals(seam.suffix)) return;
  fired = true;
  process.kill(process.pid, seam.signal);
};
