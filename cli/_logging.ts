/**
 * Logging set-up for the binaries: the libraries only ask for loggers by category; this is the
 * one place that configures sinks.
 *
 * @module
 */
import { configure, getStreamSink, getTextFormatter, type Sink } from "@logtape/logtape";

/** Options of {@linkcode configureLogging}. */
export interface LoggingOptions {
  /** Log debug messages too. @default false */
  debug?: boolean;
  /** Extra sink (for example a log file). */
  sink?: Sink;
}

/** Sends `funcx` logs to stderr (and `sink`). */
export async function configureLogging(options: LoggingOptions = {}): Promise<void> {
  const sinks: Record<string, Sink> = {
    stderr: getStreamSink(Deno.stderr.writable, { formatter: getTextFormatter() }),
  };
  if (options.sink) sinks["extra"] = options.sink;
  await configureSinks(sinks, options.debug ?? false);
}

/** Sends `funcx` logs (and LogTape's own warnings) to every one of `sinks`. */
export async function configureSinks(sinks: Record<string, Sink>, debug: boolean): Promise<void> {
  await configure({
    reset: true,
    sinks,
    loggers: [
      { category: ["funcx"], lowestLevel: debug ? "debug" : "info", sinks: Object.keys(sinks) },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: Object.keys(sinks) },
    ],
  });
}
