import type { JobData } from "../../shared/job.ts";
import { PermanentJobError } from "../errors.ts";
import type { JudgeFactory } from "./rowJudge.ts";
import { compileTransform, type TransformRegistry } from "./transforms/registry.ts";
import { compileTableSchema } from "./validatorCompiler.ts";

/** The job's way of judging rows, compiled once for the job. */
export function judgeFactoryFor(
  data: Pick<JobData, "schema" | "transform" | "options">,
  transforms: TransformRegistry,
): JudgeFactory {
  if (data.schema) {
    const { maxUniqueValues, values } = data.options;
    return compileTableSchema(data.schema, { maxUniqueValues, values });
  }
  const transform = transforms.get(data.transform ?? "");
  if (!transform) {
    throw new PermanentJobError(
      `no worker here has the transform "${data.transform}"; this one has: ${[...transforms.keys()].join(", ")} (start workers with --transforms MODULE to add yours)`,
    );
  }
  return compileTransform(transform);
}
