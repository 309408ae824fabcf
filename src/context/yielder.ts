/**
 * Walking and hashing use synchronous fs calls (several times cheaper than
 * the thread pool for lstat and small reads); this gives the event loop a
 * turn every few milliseconds so timers and progress output keep running.
 */
const CHECK_EVERY = 128;
const SLICE_MS = 10;

export class Yielder {
  private count = 0;
  private sliceStart = performance.now();

  /** Returns a promise to await when it is time to yield, else undefined (no microtask cost). */
  tick(): Promise<void> | undefined {
    if (++this.count % CHECK_EVERY !== 0) return undefined;
    if (performance.now() - this.sliceStart < SLICE_MS) return undefined;
    return new Promise((resolve) => {
      setImmediate(() => {
        this.sliceStart = performance.now();
        resolve();
      });
    });
  }
}
