/**
 * The endpoint software's version, in a module of its own so `funcx-endpoint version` and the
 * CLI's entry point need not load the endpoint. It is `deno.json`'s `version`: the binaries, the
 * SDK and the release tag share that one source.
 *
 * @module
 */
import config from "../deno.json" with { type: "json" };

/** Version of the endpoint software (`deno.json`'s `version`). */
export const ENDPOINT_VERSION: string = config.version;
