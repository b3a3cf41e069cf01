import { contactsNormalize } from "./contactsNormalize.ts";
import type { TransformRegistry } from "./registry.ts";

/**
 * The transforms built into every worker; `s3csv worker --transforms MODULE` (or
 * TRANSFORM_MODULES) adds a team's own without a fork.
 */
export const builtInTransforms: TransformRegistry = new Map(
  [contactsNormalize].map((t) => [t.name, t]),
);
