/**
 * How `funcx-endpoint` gets a logged-in {@linkcode FuncXClient}: API client credentials
 * (`FUNCX_SDK_CLIENT_ID`, `FUNCX_SDK_CLIENT_SECRET`) or a bearer token (`FUNCX_SDK_ACCESS_TOKEN`)
 * from the environment; else a login kept in the token store (`<config dir>/storage.db`); else,
 * on a terminal, the service's device flow (approve a code on the service's login page from any
 * browser); else a clear message.
 *
 * @module
 */
import { FuncXClient } from "../sdk/client.ts";
import { LoginManager } from "../sdk/login_manager.ts";
import { join } from "node:path";

/** Where a client's credentials came from. */
export type CredentialSource = "client_credentials" | "access_token" | "stored_login";

/** Thrown when no credentials are available; the message says how to get some. */
export class NotLoggedIn extends Error {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "NotLoggedIn";
  }
}

/** The login manager of a config dir's token store. */
export function storedLogin(serviceAddress: string, configDir: string): LoginManager {
  return new LoginManager({ serviceAddress, storePath: join(configDir, "storage.db") });
}

/**
 * A client for `serviceAddress`, or {@linkcode NotLoggedIn}. With `interactive` (a terminal),
 * a missing login starts the device flow.
 */
export async function loginClient(
  serviceAddress: string,
  options: { configDir: string; interactive?: boolean },
  env: Record<string, string | undefined> = Deno.env.toObject(),
): Promise<{ client: FuncXClient; source: CredentialSource; clientId: string | undefined }> {
  const clientId = env["FUNCX_SDK_CLIENT_ID"];
  const clientSecret = env["FUNCX_SDK_CLIENT_SECRET"];
  const accessToken = env["FUNCX_SDK_ACCESS_TOKEN"];
  if (clientId && clientSecret) {
    return {
      client: new FuncXClient({ serviceAddress, clientId, clientSecret }),
      source: "client_credentials",
      clientId,
    };
  }
  if (accessToken) {
    return {
      client: new FuncXClient({ serviceAddress, accessToken }),
      source: "access_token",
      clientId,
    };
  }
  const login = storedLogin(serviceAddress, options.configDir);
  if (!(await login.accessToken()) && options.interactive) await login.login();
  if (await login.accessToken()) {
    return {
      client: new FuncXClient({ serviceAddress, loginManager: login }),
      source: "stored_login",
      clientId,
    };
  }
  await login.close();
  throw new NotLoggedIn(
    `Not logged in to the funcX service at "${serviceAddress}": run this command on a terminal ` +
      "to log in (device flow), or set FUNCX_SDK_CLIENT_ID and FUNCX_SDK_CLIENT_SECRET to an " +
      "API client's credentials.\n" +
      "  Create them on the service host with: funcx-service client create --user <you>",
  );
}
