import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { TRANSFORM_BRAND, type Transform, type TransformRegistry } from "./registry.ts";

// A team's own transforms, loaded at start-up from modules that export what defineTransform
// made (named exports, a default export, or a default array). Anything wrong stops the worker
// before it takes a job, with the module and the problem named.

const NAME = /^[a-z0-9][a-z0-9-]*$/;

export class TransformModuleError extends Error {
  override name = "TransformModuleError";
}

function isTransform(value: unknown): value is Transform {
  return typeof value === "object" && value !== null && TRANSFORM_BRAND in value;
}

/** What is wrong with a transform's definition, or undefined. */
function definitionProblem(t: Transform): string | undefined {
  if (typeof t.name !== "string" || !NAME.test(t.name))
    return `its name ${JSON.stringify(t.name)} must be lower-case letters, digits and dashes`;
  const input = t.input as { shape?: unknown; safeParse?: unknown } | undefined;
  if (typeof input?.safeParse !== "function" || typeof input.shape !== "object")
    return "its input must be a zod object (z.object({...}))";
  if (!Array.isArray(t.columns) || t.columns.length === 0 || !t.columns.every((c) => c !== ""))
    return "its columns must be a non-empty list of column names";
  if (typeof t.map !== "function") return "its map must be a function";
  if (t.map.constructor.name === "AsyncFunction") return "its map must not be async";
  return undefined;
}

function exportedTransforms(exports: Record<string, unknown>): Transform[] {
  const values = Object.values(exports).flatMap((v) => (Array.isArray(v) ? v : [v]));
  return [...new Set(values.filter(isTransform))];
}

async function importModule(path: string): Promise<Record<string, unknown>> {
  try {
    return (await import(pathToFileURL(resolve(path)).href)) as Record<string, unknown>;
  } catch (error) {
    throw new TransformModuleError(
      `transforms module ${path} could not be loaded: ${(error as Error).message}`,
    );
  }
}

/** The built-in transforms plus every module's, or a TransformModuleError. */
export async function loadTransforms(
  paths: readonly string[],
  builtIn: TransformRegistry,
): Promise<TransformRegistry> {
  const registry = new Map(builtIn);
  const origin = new Map([...builtIn.keys()].map((name) => [name, "built in"]));
  for (const path of paths) {
    const found = exportedTransforms(await importModule(path));
    if (found.length === 0) {
      throw new TransformModuleError(
        `transforms module ${path} exports no transform: export what defineTransform (from "s3csv") returns`,
      );
    }
    for (const t of found) {
      const problem = definitionProblem(t);
      if (problem) {
        throw new TransformModuleError(
          `transforms module ${path}: transform ${JSON.stringify(t.name)}: ${problem}`,
        );
      }
      const earlier = origin.get(t.name);
      if (earlier) {
        throw new TransformModuleError(
          `transforms module ${path}: a transform named "${t.name}" is already registered (${earlier})`,
        );
      }
      registry.set(t.name, t);
      origin.set(t.name, path);
    }
  }
  return registry;
}
