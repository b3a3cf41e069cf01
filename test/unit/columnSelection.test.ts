import { describe, expect, it } from "vitest";
import { selectColumns } from "../../worker/csv/columnSelection.ts";

describe("selectColumns", () => {
  const names = ["id", "email", "score"];
  const types = ["integer", "string", "number"] as const;

  it("keeps every column, in order, when nothing is selected or renamed", () => {
    const all = selectColumns(names, [...types], {});
    expect(all.all).toBe(true);
    expect(all.header).toEqual(names);
  });

  it("selects, reorders and relabels columns, types following them", () => {
    const picked = selectColumns(names, [...types], {
      select: ["score", "id"],
      rename: { score: "Score (%)" },
    });
    expect(picked.all).toBe(false);
    expect(picked.header).toEqual(["Score (%)", "id"]);
    expect(picked.types).toEqual(["number", "integer"]);
    expect(picked.pick(["1", "a@x", "9.5"])).toEqual(["9.5", "1"]);
  });

  it("fails the job on a name the judge does not output (a transform's columns)", () => {
    expect(() => selectColumns(names, undefined, { select: ["id", "phone"] })).toThrow(
      /options.select\/rename name "phone", not among the output columns \("id", "email", "score"\)/,
    );
    expect(() => selectColumns(names, undefined, { rename: { id: "email" } })).toThrow(
      /same label/,
    );
  });
});
