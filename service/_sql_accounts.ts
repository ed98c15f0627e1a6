/**
 * The shared SQL of accounts: users, API clients, tokens, device-flow codes, dashboard sessions
 * and passed sign-ins.
 *
 * @module
 */
import { SqlBase } from "./_sql_base.ts";
import { str, strOrNull, toDeviceCode, toSession } from "./_store_rows.ts";
import type { DeviceCodeRecord, SessionRecord, UserRecord } from "./store.ts";

/** The users, API clients, tokens, device codes and dashboard sessions: the same SQL on both. */
export abstract class SqlAccounts extends SqlBase {
  // ---- users, clients, tokens ----

  async ensureUser(name: string, passwordHash: string | null = null): Promise<UserRecord> {
    await this.run(
      "INSERT INTO users (id, name, password_hash, created_at) VALUES (?, ?, ?, ?) " +
        "ON CONFLICT (name) DO NOTHING",
      [crypto.randomUUID(), name, passwordHash, Date.now() / 1000],
    );
    const row = (await this.firstRow("SELECT id, name FROM users WHERE name = ?", [name]))!;
    return { id: str(row, "id"), name: str(row, "name") };
  }

  async listUsers(): Promise<UserRecord[]> {
    return (await this.all("SELECT id, name FROM users ORDER BY name")).map((r) => ({
      id: str(r, "id"),
      name: str(r, "name"),
    }));
  }

  async addClient(id: string, userId: string, secretHash: string, name: string): Promise<void> {
    await this.run(
      "INSERT INTO clients (id, user_id, secret_hash, name, created_at) VALUES (?, ?, ?, ?, ?)",
      [id, userId, secretHash, name, Date.now() / 1000],
    );
  }

  async getClient(id: string): Promise<{ userId: string; secretHash: string } | undefined> {
    const row = await this.firstRow("SELECT user_id, secret_hash FROM clients WHERE id = ?", [id]);
    return row ? { userId: str(row, "user_id"), secretHash: str(row, "secret_hash") } : undefined;
  }

  async addToken(
    hash: string,
    userId: string,
    clientId: string | null,
    expiresAt: number,
    kind: "access" | "refresh" = "access",
  ): Promise<void> {
    await this.run(
      "INSERT INTO tokens (hash, user_id, client_id, kind, expires_at) VALUES (?, ?, ?, ?, ?)",
      [hash, userId, clientId, kind, expiresAt],
    );
  }

  async userForToken(
    hash: string,
    now: number,
    kind: "access" | "refresh" = "access",
  ): Promise<(UserRecord & { clientId: string | null }) | undefined> {
    const row = await this.firstRow(
      "SELECT u.id, u.name, t.client_id FROM tokens t JOIN users u ON u.id = t.user_id " +
        "WHERE t.hash = ? AND t.expires_at > ? AND t.kind = ?",
      [hash, now, kind],
    );
    return row
      ? { id: str(row, "id"), name: str(row, "name"), clientId: strOrNull(row, "client_id") }
      : undefined;
  }

  async deleteToken(hash: string): Promise<boolean> {
    return await this.run("DELETE FROM tokens WHERE hash = ?", [hash]) > 0;
  }

  async setPassword(userId: string, passwordHash: string): Promise<void> {
    await this.run("UPDATE users SET password_hash = ? WHERE id = ?", [passwordHash, userId]);
  }

  async userByName(
    name: string,
  ): Promise<(UserRecord & { passwordHash: string | null }) | undefined> {
    const row = await this.firstRow("SELECT id, name, password_hash FROM users WHERE name = ?", [
      name,
    ]);
    return row
      ? {
        id: str(row, "id"),
        name: str(row, "name"),
        passwordHash: strOrNull(row, "password_hash"),
      }
      : undefined;
  }

  async addDeviceCode(
    hash: string,
    userCode: string,
    clientId: string,
    expiresAt: number,
  ): Promise<void> {
    await this.run(
      "INSERT INTO device_codes (hash, user_code, client_id, status, expires_at) " +
        "VALUES (?, ?, ?, 'pending', ?)",
      [hash, userCode, clientId, expiresAt],
    );
  }

  async deviceCode(hash: string): Promise<DeviceCodeRecord | undefined> {
    const row = await this.firstRow("SELECT * FROM device_codes WHERE hash = ?", [hash]);
    return row ? toDeviceCode(row) : undefined;
  }

  async deviceCodeByUserCode(userCode: string): Promise<DeviceCodeRecord | undefined> {
    const row = await this.firstRow("SELECT * FROM device_codes WHERE user_code = ?", [userCode]);
    return row ? toDeviceCode(row) : undefined;
  }

  async decideDeviceCode(
    hash: string,
    status: "approved" | "denied",
    userId: string | null,
  ): Promise<void> {
    await this.run(
      "UPDATE device_codes SET status = ?, user_id = ? WHERE hash = ? AND status = 'pending'",
      [status, userId, hash],
    );
  }

  async deleteDeviceCode(hash: string): Promise<boolean> {
    return await this.run("DELETE FROM device_codes WHERE hash = ?", [hash]) > 0;
  }

  // ---- dashboard sessions ----

  async addSession(hash: string, userId: string, csrf: string, expiresAt: number): Promise<void> {
    await this.run(
      "INSERT INTO sessions (hash, user_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
      [hash, userId, csrf, Date.now() / 1000, expiresAt],
    );
  }

  async sessionFor(hash: string, now: number): Promise<SessionRecord | undefined> {
    const row = await this.firstRow(
      "SELECT u.id, u.name, s.csrf, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id " +
        "WHERE s.hash = ? AND s.expires_at > ?",
      [hash, now],
    );
    return row ? toSession(row) : undefined;
  }

  async deleteSession(hash: string): Promise<boolean> {
    return await this.run("DELETE FROM sessions WHERE hash = ?", [hash]) > 0;
  }

  async passSignIn(key: string): Promise<void> {
    await this.run("DELETE FROM sign_in_attempts WHERE attempt_key = ?", [key]);
  }
}
