// Concurrency helpers: combined cancel signals, a semaphore, a bounded worker pool.

/** Return a signal that aborts when any of the given ones does (null entries are skipped). */
export function anySignal(signals) {
  const live = signals.filter(Boolean);
  if (live.length <= 1) return live[0] || null;
  const controller = new AbortController();
  for (const signal of live) {
    if (signal.aborted) {
      controller.abort();
      break;
    }
    signal.addEventListener("abort", () => controller.abort(), { once: true });
  }
  return controller.signal;
}

/** A counting semaphore: run(fn) waits for a free slot, so at most `limit` fns run at once. */
export class Limiter {
  constructor(limit) {
    this.limit = Math.max(1, limit | 0);
    this.active = 0;
    this.queue = [];
  }

  /** Run fn once a slot is free; resolve or reject as it does. */
  async run(fn) {
    if (this.active >= this.limit) await new Promise((resolve) => this.queue.push(resolve));
    this.active += 1;
    try {
      return await fn();
    } finally {
      this.active -= 1;
      this.queue.shift()?.();
    }
  }
}

/** Run worker(item, index) over items with at most `limit` running at once. */
export async function runLimited(items, limit, worker) {
  let next = 0;
  const lanes = Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, async () => {
    while (next < items.length) {
      const index = next++;
      await worker(items[index], index);
    }
  });
  await Promise.all(lanes);
}

/** Return array cut into consecutive slices of at most size items. */
export function chunks(array, size) {
  const out = [];
  for (let i = 0; i < array.length; i += size) out.push(array.slice(i, i + size));
  return out;
}
