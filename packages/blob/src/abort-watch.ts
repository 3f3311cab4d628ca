/**
 * One "abort" listener per AbortSignal for many short waits: `watchAbort(signal, fn)` calls `fn`
 * when the signal aborts, unless the returned function was called first. A GET over the socket
 * pool watches its job's signal while it is in flight; adding and removing an EventTarget
 * listener for each of them (Node validates, wraps and indexes every listener) was a visible
 * part of a small file's CPU, where a Set entry per wait is not. A signal gets its one listener
 * at its first watch and keeps it for its life (an empty set between waits).
 *
 * Like addEventListener, a watch of a signal that has already aborted is never called: check
 * `signal.aborted` first. `fn` must be a function of its own per watch (a set holds them).
 */
const watchers = new WeakMap<AbortSignal, Set<() => void>>();

export const watchAbort = (signal: AbortSignal, fn: () => void): (() => void) => {
  let set = watchers.get(signal);
  if (set === undefined) {
    const fresh = new Set<() => void>();
    set = fresh;
    watchers.set(signal, fresh);
    signal.addEventListener(
      "abort",
      () => {
        const called = [...fresh];
        fresh.clear();
        for (const f of called) f();
      },
      { once: true },
    );
  }
  const own = set;
  own.add(fn);
  return () => {
    own.delete(fn);
  };
};
