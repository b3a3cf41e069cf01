import type { JobData } from "../shared/job.ts";
import { PermanentJobError } from "./errors.ts";
import type { JudgeFactory } from "./rowJudge.ts";
import { transforms } from "./transforms/index.ts";
import { compileTransform } from "./transforms/registry.ts";
import { compileTableSchema } from "./validatorCompiler.ts";

/** The job's way of judging rows, compiled once for the job. */
export function judgesFor(data: Pick<JobData, "schema" | "transform" | "options">): JudgeFactory {
  if (data.schema)
    return compileTableSchema(data.schema, { maxUniqueValues: data.options.maxUniqueValues });
  const transform = transforms.get(data.transform ?? "");
  if (!transform) {
    throw new PermanentJobError(
      `unknown transform "${data.transform}"; this worker has: ${[...transforms.keys()].join(", ")}`,
    );
  }
  return compileTransform(transform);
}
