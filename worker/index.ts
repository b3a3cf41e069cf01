// What the package's root exports: the way to write a team's own transforms for a worker to
// load with `s3csv worker --transforms MODULE`.

export {
  defineTransform,
  type OutputValue,
  type Transform,
} from "./judge/transforms/registry.ts";
