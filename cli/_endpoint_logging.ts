/**
 * Logging of `funcx-endpoint`: a rotating `endpoint.log` for the daemon, and the console (with
 * ANSI colours on a terminal unless `--no-color` or `NO_COLOR`) for foreground runs and
 * `--log-to-console`.
 *
 * @module
 */
import {
  getAnsiColorFormatter,
  getStreamSink,
  getTextFormatter,
  type Sink,
} from "@logtape/logtape";
import { getRotatingFileSink } from "@logtape/file";
import { configureSinks } from "./_logging.ts";

/** Options of {@linkcode configureEndpointLogging}. */
export interface EndpointLoggingOptions {
  /** Log debug messages too. @default false */
  debug?: boolean;
  /** Log to stderr. @default false */
  console?: boolean;
  /** Colours on the console when it is a terminal. @default true */
  color?: boolean;
  /** The rotating log file (`endpoint.log`). */
  file?: string;
}

/** Configures the `funcx` loggers. */
export async function configureEndpointLogging(options: EndpointLoggingOptions): Promise<void> {
  const sinks: Record<string, Sink> = {};
  if (options.console) {
    const color = (options.color ?? true) && Deno.stderr.isTerminal() &&
      !Deno.env.get("NO_COLOR");
    sinks["console"] = getStreamSink(Deno.stderr.writable, {
      formatter: color ? getAnsiColorFormatter({ timestamp: "date-time" }) : getTextFormatter(),
    });
  }
  if (options.file) {
    sinks["file"] = getRotatingFileSink(options.file, {
      maxSize: 100 * 1024 * 1024,
      maxFiles: 2,
      formatter: getTextFormatter(),
      bufferSize: 0,
    });
  }
  await configureSinks(sinks, options.debug ?? false);
}
