import { type ParseArgsConfig, parseArgs } from "node:util";
import { UsageError } from "./usageError.ts";

// Every command's flags go through node's parseArgs, whose errors are written for programmers:
// "--max-invalid -1" gets three lines about an ambiguous argument. Here they become the one line
// the CLI promises, naming the option and what it takes.

/**
 * What each option named takes, said when its value is missing or starts with "-": for options
 * whose values never do (numbers that cannot be negative, durations), so that such a value is a
 * mistake to explain, never a value to ask for as --name=-1.
 */
export type OptionTakes = Readonly<Record<string, string>>;

/** parseArgs, its errors a UsageError of one line. */
export function parseCommandLine<T extends ParseArgsConfig>(
  config: T,
  takes: OptionTakes = {},
): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (error) {
    throw commandLineError(error, config.args ?? [], takes);
  }
}

/** What a flag of seconds takes (--timeout, --interval). */
export const SECONDS = "a number of seconds above 0";

/** A flag's value as a number of seconds above 0, or a UsageError saying what it takes. */
export function positiveSeconds(option: string, value: string): number {
  const seconds = Number(value);
  if (!(Number.isFinite(seconds) && seconds > 0)) throw takesError(option, SECONDS, value);
  return seconds;
}

/** What an option takes and what it was given, as the validation of each command says it. */
export function takesError(option: string, takes: string, value: string): UsageError {
  return new UsageError(`--${option} takes ${takes}: got ${value}`);
}

/** A message joined into one line: node's parseArgs writes some in several sentences. */
export function oneLine(message: string): string {
  return message
    .trim()
    .split(/\s*\n\s*/)
    .join(" ");
}

/**
 * parseArgs's error as a UsageError of one line; an option that lacks its value says what it
 * takes (from `takes`) or how to give a value that starts with "-". Any other error as it is.
 */
function commandLineError(error: unknown, args: readonly string[], takes: OptionTakes): unknown {
  const e = error as { code?: unknown; message?: unknown } | null;
  if (typeof e?.code !== "string" || !e.code.startsWith("ERR_PARSE_ARGS")) return error;
  const message = String(e.message);
  const flag = /^Option '(--[^' ]+)/.exec(message)?.[1];
  if (e.code !== "ERR_PARSE_ARGS_INVALID_OPTION_VALUE" || flag === undefined)
    return new UsageError(oneLine(message));
  const name = flag.slice(2);
  const what = takes[name];
  if (/argument missing$/.test(message))
    return new UsageError(what ? `${flag} takes ${what}` : `${flag} needs a value`);
  // "argument is ambiguous": the argument after the flag starts with "-".
  // A lone "-" is a value parseArgs takes (stdin, by convention); "-x" is what it balks at.
  const optionLike = (arg: string | undefined) =>
    arg !== undefined && arg.length > 1 && arg.startsWith("-");
  const at = args.findIndex((arg, i) => arg === flag && optionLike(args[i + 1]));
  const value = at < 0 ? undefined : args[at + 1];
  if (!/ambiguous/.test(message) || value === undefined) return new UsageError(oneLine(message));
  if (what) return takesError(name, what, value);
  return new UsageError(
    `${flag} is followed by ${value}, which reads as an option: give ${flag} its value, or write ${flag}=${value} if that is the value`,
  );
}
