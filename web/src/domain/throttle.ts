/** Calls `fn` at most once per `ms`; the last call in a window always goes out at its end. */
export function throttle<A extends unknown[]>(
  fn: (...args: A) => void,
  ms: number,
): ((...args: A) => void) & { cancel: () => void } {
  let last = -Infinity;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let pending: A | null = null;
  const flush = () => {
    timer = undefined;
    if (pending === null) return;
    const args = pending;
    pending = null;
    last = Date.now();
    fn(...args);
  };
  const call = (...args: A) => {
    pending = args;
    const wait = last + ms - Date.now();
    if (wait <= 0 && timer === undefined) flush();
    else timer ??= setTimeout(flush, Math.max(0, wait));
  };
  call.cancel = () => {
    clearTimeout(timer);
    timer = undefined;
    pending = null;
  };
  return call;
}
