import type { JobProgress } from "../shared/job.ts";

const WIDTH = 30;

function megabytes(bytes: number): string {
  return (bytes / 1e6).toFixed(1);
}

/** One line that redraws itself on a terminal: bar, percent, bytes and row counts. */
export function renderProgress(p: JobProgress): string {
  const filled = Math.round((p.progress / 100) * WIDTH);
  const bar = `${"#".repeat(filled)}${"-".repeat(WIDTH - filled)}`;
  return `[${bar}] ${p.progress.toFixed(1).padStart(5)}%  ${megabytes(p.bytesRead)}/${megabytes(p.bytesTotal)} MB  ${p.rows.read} rows, ${p.rows.rejected} rejected`;
}

export function progressWriter(stream: NodeJS.WriteStream): {
  update(p: JobProgress): void;
  done(): void;
} {
  let drawn = false;
  return {
    update(p) {
      if (!stream.isTTY) return;
      stream.write(`\r${renderProgress(p)}`);
      drawn = true;
    },
    done() {
      if (drawn) stream.write("\n");
    },
  };
}
