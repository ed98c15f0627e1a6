/**
 * The version the `funcx` and `funcx-service` commands report: `deno.json`'s `version`, the one
 * source the binaries, the SDK (`SDK_VERSION`) and the release tag share.
 *
 * @module
 */
import config from "../deno.json" with { type: "json" };

/** Version of this software (`deno.json`'s `version`). */
export const VERSION: string = config.version;
