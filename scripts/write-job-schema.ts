import { writeFile } from "node:fs/promises";
import { jobJsonSchema } from "../shared/jobJsonSchema.ts";

// Regenerates shared/job.schema.json from the zod contract; a test fails when they differ.
await writeFile(new URL("../shared/job.schema.json", import.meta.url), jobJsonSchema());
