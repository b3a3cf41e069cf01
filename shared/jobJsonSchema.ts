import { z } from "zod";
import { JobInput } from "./job.ts";

/** The job contract as JSON Schema, for producers in other languages. */
export function jobJsonSchema(): string {
  const schema = z.toJSONSchema(JobInput, {
    io: "input",
    unrepresentable: "any",
    target: "draft-2020-12",
  });
  return `${JSON.stringify({ title: "s3csv job", ...schema }, null, 2)}\n`;
}
