/**
 * The endpoint software's version, in a module of its own so `funcx-endpoint version` and the
 * CLI's entry point need not load the endpoint.
 *
 * @module
 */

/** Version of the endpoint software. */
export const ENDPOINT_VERSION = "0.2.0";
