import { contactsNormalize } from "./contactsNormalize.ts";
import type { Transform } from "./registry.ts";

/** Every transform a worker can run, by name. Register a new one by adding it here. */
export const transforms: ReadonlyMap<string, Transform> = new Map(
  [contactsNormalize].map((t) => [t.name, t]),
);
