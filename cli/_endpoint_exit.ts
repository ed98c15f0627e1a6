/**
 * What every `funcx-endpoint` command shares and the entry point loads before any command:
 * funcX's exit codes, the error that ends a command with one, and the common options. Kept
 * free of heavy imports, so `__worker` and `__manager` in the compiled binary start light.
 *
 * @module
 */

/** Exit codes of funcX (sysexits.h), so supervisors can tell a retryable failure from a final one. */
export const EXIT = {
  OK: 0,
  ERROR: 1,
  DATAERR: 65,
  UNAVAILABLE: 69,
  SOFTWARE: 70,
  TEMPFAIL: 75,
} as const;

/** Ends the command with a message and an exit code. */
export class CliExit extends Error {
  /** The exit code. */
  readonly code: number;
  /** Builds the error. */
  constructor(code: number, message: string) {
    super(message);
    this.name = "CliExit";
    this.code = code;
  }
}

/** Options every command takes. */
export interface CommonOptions {
  configDir: string;
  debug: boolean;
  logToConsole: boolean;
  color: boolean;
}
