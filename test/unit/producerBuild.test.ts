import { describe, expect, it } from "vitest";

// Apps import the compiled producer (`s3csv/producer`), built by `npm install`'s prepare step.
describe("the published producer library", () => {
  it("is plain JavaScript apps can import, with the same API", async () => {
    const producer = (await import(
      new URL("../../dist/producer/index.js", import.meta.url).href
    )) as Record<string, unknown>;
    for (const name of [
      "enqueueTransform",
      "enqueueTransforms",
      "waitForResult",
      "transformQueue",
      "validateJobInput",
    ]) {
      expect(typeof producer[name], name).toBe("function");
    }
    const validate = producer.validateJobInput as (input: unknown) => unknown;
    expect(() => validate({ source: { bucket: "in-bucket" } })).toThrow(/source.key/);
  });
});
