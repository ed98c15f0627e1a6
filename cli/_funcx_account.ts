/**
 * The `funcx` commands about the account: log in, log out, and list its endpoints and functions.
 *
 * @module
 */
import { join } from "node:path";
import { storedLogin } from "./_endpoint_login.ts";
import { EXIT } from "./_funcx_output.ts";
import { client, type GlobalOptions, print, serviceAddress } from "./_funcx_session.ts";
import { table } from "./_table.ts";

/** `login [--force]`. */
export async function loginCommand(g: GlobalOptions, force: boolean): Promise<number> {
  const address = serviceAddress();
  const env = Deno.env.toObject();
  let source = "stored_login";
  if (env["FUNCX_SDK_CLIENT_ID"] && env["FUNCX_SDK_CLIENT_SECRET"]) {
    source = "client_credentials";
  } else {
    const login = storedLogin(address, g.configDir);
    try {
      if (force || !(await login.accessToken())) {
        await login.login();
        source = "device_flow";
      }
    } finally {
      await login.close();
    }
  }
  const c = await client(g);
  const me = await c.whoami();
  if (g.json) {
    print({ service: c.serviceAddress, user: me.username, user_id: me.id, source });
  } else {
    console.log(
      `Logged in to ${c.serviceAddress} as ${me.username}` +
        (source === "client_credentials"
          ? " (client credentials from FUNCX_SDK_CLIENT_ID and FUNCX_SDK_CLIENT_SECRET)"
          : ` (login kept in ${join(g.configDir, "storage.db")})`),
    );
  }
  return EXIT.OK;
}

/** `logout`: revokes the stored login and forgets it. */
export async function logoutCommand(g: GlobalOptions): Promise<number> {
  const login = storedLogin(serviceAddress(), g.configDir);
  let revoked: boolean;
  try {
    revoked = await login.logout();
  } finally {
    await login.close();
  }
  if (g.json) print({ service: login.serviceAddress, logged_out: revoked });
  else {
    console.log(
      revoked
        ? `Logged out of ${login.serviceAddress}`
        : `No stored login for ${login.serviceAddress}`,
    );
  }
  return EXIT.OK;
}

/** `endpoints`: the user's endpoints and whether they are online. */
export async function endpointsCommand(g: GlobalOptions): Promise<number> {
  const eps = await (await client(g)).getEndpoints();
  const rows = eps.map((e) => ({ endpoint_id: e.endpoint_id, name: e.name, status: e.status }));
  if (g.json) print({ endpoints: rows });
  else if (rows.length === 0) console.log("No endpoints (start one with: funcx-endpoint start)");
  else {
    console.log(
      table(["Endpoint ID", "Status", "Name"], rows.map((e) => [e.endpoint_id, e.status, e.name])),
    );
  }
  return EXIT.OK;
}

/** `functions`: the user's registered functions, newest first. */
export async function functionsCommand(g: GlobalOptions, limit: number): Promise<number> {
  const fns = await (await client(g)).getFunctions({ limit });
  const rows = fns.map((f) => ({
    function_id: f.function_uuid,
    name: f.function_name,
    description: f.description,
    public: f.public,
    created_at: new Date(f.created_at * 1000).toISOString(),
  }));
  if (g.json) print({ functions: rows });
  else if (rows.length === 0) console.log("No functions registered");
  else {
    console.log(
      table(
        ["Function ID", "Name", "Registered"],
        rows.map((f) => [f.function_id, f.name, f.created_at]),
      ),
    );
  }
  return EXIT.OK;
}
