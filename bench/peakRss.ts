import { readFileSync } from "node:fs";

/** Peak resident set size of a live process, in bytes (Linux /proc, VmHWM). */
export function peakRss(pid: number | "self" = "self"): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
  return kb ? Number(kb) * 1024 : 0;
}
