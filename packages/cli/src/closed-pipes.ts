/**
 * `hsmfleet jobs | head -1`: once the reader of stdout or stderr has gone, every write to it fails
 * with EPIPE, which Node raises as an unhandled 'error' event (a stack trace, exit code 1). Here a
 * closed pipe only silences that stream: the command carries on to its own end and exit code. It
 * does not exit at once as a SIGPIPE'd filter would, because a job command still has to stop its
 * in-process workers and the embedded nats-server and Azurite it started, and a job is cancelled
 * by Ctrl-C or `hsmfleet cancel`, never because whoever read its output went away.
 */
export const ignoreClosedPipes = (
  streams: NodeJS.WriteStream[] = [process.stdout, process.stderr],
): void => {
  for (const stream of streams) {
    stream.on("error", (err: NodeJS.ErrnoException) => {
      // After the first EPIPE the stream is destroyed; later writes report ERR_STREAM_DESTROYED.
      if (err.code === "EPIPE" || err.code === "ERR_STREAM_DESTROYED") return;
      throw err;
    });
  }
};
