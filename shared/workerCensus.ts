import type { Queue } from "bullmq";

// Which job contracts the worker processes serving a queue run. Each worker announces its
// contract in its BullMQ worker name, which Redis lists with the worker's blocking connection;
// a worker of s3csv 0.2 announces none (contract 1). Producers read this before making jobs
// that only newer workers can run: split shards, watch jobs pinned to a source version.

/** One entry per worker process serving the queue: the job contract it runs. */
export interface WorkerCensus {
  contracts: number[];
}

/** The BullMQ worker name a worker announces: its job contract, for others to read. */
export function workerName(contract: number): string {
  return `s3csv-contract-${contract}`;
}

/** The queue's worker processes, or undefined where Redis does not list its clients. */
export async function workerCensus(queue: Queue): Promise<WorkerCensus | undefined> {
  try {
    const workers = await queue.getWorkers();
    if (workers.some((w) => /does not support/.test(String(w.name ?? "")))) return undefined;
    const contracts = workers.map((w) => {
      const announced = /:w:s3csv-contract-(\d+)$/.exec(String(w.rawname ?? ""));
      return announced ? Number(announced[1]) : 1;
    });
    return { contracts: contracts.sort((a, b) => a - b) };
  } catch {
    return undefined;
  }
}

/** How many of the census's worker processes run a contract older than `contract`. */
export function workersBelow(census: WorkerCensus, contract: number): number {
  return census.contracts.filter((c) => c < contract).length;
}
