import { setImmediate as tick } from "node:timers/promises";

// A worker process as the interleaving tests model it: every request it makes to S3 or Redis is
// one numbered step, which may be where it crashes (before the request takes effect, or after,
// with the answer lost), and answers come a few ticks late, the number drawn from a seed.

export class CrashError extends Error {
  override name = "CrashError";
}

export interface Crash {
  at: number;
  /** "before": the request never arrives; "after": it takes effect, its answer is lost. */
  when: "before" | "after";
}

export class Steps {
  readonly #crash: Crash | undefined;
  #seed: number;
  count = 0;
  dead = false;

  constructor(crash: Crash | undefined, seed: number) {
    this.#crash = crash;
    this.#seed = seed;
  }

  async run<T>(name: string, apply: () => T): Promise<T> {
    if (this.dead) throw new CrashError(`${name} after the crash`);
    const step = ++this.count;
    const crashing = this.#crash?.at === step;
    if (crashing && this.#crash?.when === "before") this.#die(`before ${name}`);
    const result = apply();
    if (crashing) this.#die(`after ${name}`);
    for (let n = this.#random() % 4; n > 0; n--) await tick();
    if (this.dead) throw new CrashError(`${name}'s answer after the crash`);
    return result;
  }

  #die(where: string): never {
    this.dead = true;
    throw new CrashError(`crashed at step ${this.count}, ${where}`);
  }

  #random(): number {
    this.#seed = (this.#seed * 1103515245 + 12345) % 2 ** 31;
    return this.#seed >> 16;
  }
}
