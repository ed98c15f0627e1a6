/**
 * The service's store: users, API clients and tokens, functions, endpoints and their live status,
 * task groups and tasks, and idempotency keys. Routes write submitted tasks here before they are
 * published; the result processor writes results here in batches.
 *
 * This module is the contract only: the records, {@linkcode Store} and its errors. `open_store.ts`
 * picks an implementation from where the data lives: SQLite (`node:sqlite`, WAL mode) for a file
 * path, the embedded default, or PostgreSQL for a `postgres://` URL, the store that several
 * service replicas share. Every method that changes more than one row is one transaction, and every check-then-act that two
 * replicas could race on (token rotation, device-code use, endpoint ownership, task group
 * ownership, idempotency reservations) is decided by the database, not by a read before a write.
 *
 * @module
 */
import type { ResourceSpecificationWire, TaskTransition } from "../sdk/protocol/mod.ts";

/** A user of the service. */
export interface UserRecord {
  id: string;
  name: string;
}

/** A registered function. */
export interface FunctionRecord {
  id: string;
  ownerId: string;
  name: string;
  code: string;
  description: string;
  public: boolean;
  /** The container it runs in; null for the endpoint's plain workers. */
  containerId: string | null;
  createdAt: number;
}

/** A registered container image. */
export interface ContainerRecord {
  id: string;
  ownerId: string;
  name: string;
  description: string;
  /** The runtime the image is for (`docker`, `podman`, `apptainer`, `singularity`, `custom`). */
  type: string;
  /** The image, as that runtime names it. */
  location: string;
  createdAt: number;
}

/** A registered endpoint. */
export interface EndpointRecord {
  id: string;
  ownerId: string;
  name: string;
  metadata: Record<string, unknown>;
  createdAt: number;
  lastRegisteredAt: number;
  /** Until when (epoch seconds) `stop --remote` locked it: registrations are refused till then. */
  lockedUntil: number;
  /** Deleted: the id can never be registered again. */
  deleted: boolean;
}

/** A task as stored. */
export interface TaskRecord {
  id: string;
  ownerId: string;
  groupId: string;
  functionId: string;
  endpointId: string;
  status: string;
  result: string | null;
  exception: string | null;
  errorCode: string | null;
  createdAt: number;
  completionT: number | null;
  expiresAt: number;
  /** Recorded state transitions; timestamps are ns since the epoch as decimal strings. */
  transitions: Array<{ state: string; actor: string; timestamp: string }> | null;
  /** What an MPI task asked for; null for other tasks. */
  resourceSpecification: ResourceSpecificationWire | null;
}

/** A new task to insert. */
export interface NewTask {
  id: string;
  functionId: string;
  endpointId: string;
  /** The task's CBOR (`encodeTask`), kept in the outbox until the broker confirms it. @default none */
  message?: Uint8Array;
  /** What an MPI task asks for, stored with it. @default null */
  resourceSpecification?: ResourceSpecificationWire | null;
}

/** Options of {@linkcode Store.addTasks}. */
export interface AddTasksOptions {
  /** Until when (epoch seconds) the new outbox messages are leased to the caller. @default 0 */
  leaseUntil?: number;
  /** Routing key of the group's result streams, set in the same transaction. @default unchanged */
  resultQueue?: string;
}

/** A task message waiting in the outbox for a broker confirm. */
export interface OutboxMessage {
  taskId: string;
  endpointId: string;
  body: Uint8Array;
}

/** What the result processor needs of a task that a result names. */
export interface ResultRoute {
  /** The result queue of its task group, when a result stream is attached. */
  queue: string | undefined;
  /** When a result stream last attached to its group (epoch seconds), if known. */
  streamAttachedAt: number | undefined;
  /** The endpoint it was sent to. */
  endpointId: string;
  /** When it was submitted (epoch seconds). */
  createdAt: number;
  /** Whether it has a result already (a result for it now is a redelivery). */
  finished: boolean;
}

/** A result to apply to its task. */
export interface TaskCompletion {
  taskId: string;
  status: "success" | "failed";
  data: string;
  errorCode: string | null;
  completionT: number;
  transitions: TaskTransition[] | null;
}

/** A device authorization in progress. */
export interface DeviceCodeRecord {
  hash: string;
  userCode: string;
  clientId: string;
  status: "pending" | "approved" | "denied";
  userId: string | null;
  expiresAt: number;
}

/** The newest status report of an endpoint, alive until `expiresAt`. */
export interface EndpointStatus {
  endpointId: string;
  /** The report's free-form `global_state`. */
  state: Record<string, unknown>;
  /** Epoch seconds until which the endpoint counts as online (its heartbeat period, twice). */
  expiresAt: number;
}

/** What the result processor writes from one batch of the `results` queue. */
export interface ResultBatch {
  /** Intermediate states of incomplete tasks; a later entry for a task wins. */
  updates: ReadonlyArray<{ taskId: string; status: string }>;
  /** Results; a task that already has one keeps it, and the first of a batch wins. */
  completions: readonly TaskCompletion[];
  /** Endpoint status reports; a later entry for an endpoint wins. */
  statuses?: readonly EndpointStatus[];
}

/** What identifies an idempotent request: who sent which key with which request. */
export interface IdempotencyRequest {
  userId: string;
  key: string;
  method: string;
  path: string;
  /** SHA-256 (hex) of the request body. */
  requestHash: string;
}

/** A recorded idempotency key. */
export interface IdempotencyRecord extends IdempotencyRequest {
  /** Identifies the attempt that holds the reservation. */
  token: string;
  /** `in_progress` from the reservation until the response is stored. */
  state: "in_progress" | "done";
  responseStatus: number | null;
  responseBody: string | null;
  createdAt: number;
  /** Until when (epoch seconds) an `in_progress` attempt is presumed alive. */
  leaseUntil: number;
  expiresAt: number;
}

/** Times of an idempotency reservation. */
export interface ReserveOptions {
  /** Epoch seconds. */
  now: number;
  /** Seconds an unfinished attempt keeps the key before a retry may take it over. */
  leaseS: number;
  /** Seconds the key and its stored response are kept. */
  ttlS: number;
}

/** The outcome of {@linkcode Store.reserveIdempotencyKey}. */
export type IdempotencyReservation =
  | { reserved: true; token: string }
  | { reserved: false; existing: IdempotencyRecord };

/** One attempt's hold on an idempotency key. */
export interface IdempotencyHold {
  userId: string;
  key: string;
  token: string;
}

/** How many rows {@linkcode Store.purgeExpired} deleted, by kind. */
export interface PurgeCounts {
  tasks: number;
  tokens: number;
  deviceCodes: number;
  idempotencyKeys: number;
}

/** A dashboard session: who it signs in and the CSRF token of its forms. */
export interface SessionRecord {
  user: UserRecord;
  /** The token every state-changing form of this session carries. */
  csrf: string;
  expiresAt: number;
}

/** The limit on one key of sign-in attempts (an account, a client address, an API client). */
export interface AttemptLimit {
  /** What is counted, e.g. `user:alice` or `addr:203.0.113.9`. */
  key: string;
  /** Failed attempts allowed in a window; the attempt that reaches it starts the lock. */
  maxFailures: number;
  /** Seconds after the first counted attempt that the count starts again. */
  windowS: number;
  /** Seconds a key stays locked. */
  lockS: number;
  /**
   * Counted when the attempt starts, and forgotten when it succeeds (attempts racing cannot get
   * past the limit: right for an account); otherwise counted only when it fails (a burst of
   * good attempts cannot lock it: right for a client address).
   */
  countUpFront: boolean;
}

/** Where one key stands after an attempt was counted or failed. */
export interface AttemptVerdict {
  key: string;
  /** Attempts counted in the window, this one included (0 when locked). */
  count: number;
  /** Epoch seconds until which the key is locked; 0 when it is not. */
  lockedUntil: number;
}

/** An endpoint's online period: from its first report to the expiry of its last. */
export interface UptimeSegment {
  since: number;
  /** Time of the last status report of the period. */
  lastReportAt: number;
  /** Until when the last report keeps it online. */
  until: number;
}

/** A task group with its tasks counted by status. */
export interface TaskGroupSummary {
  id: string;
  createdAt: number;
  total: number;
  /** Tasks by their stored status (`waiting-for-ep`, `running`, `success`, ...). */
  counts: Record<string, number>;
}

/** A task without its result, for lists. */
export interface TaskSummary {
  id: string;
  groupId: string;
  functionId: string;
  endpointId: string;
  status: string;
  createdAt: number;
  completionT: number | null;
}

/** What the dashboard's searches of tasks and task groups match: every filter given must. */
export interface TaskFilter {
  /** Stored statuses, any of them. @default any */
  statuses?: readonly string[] | undefined;
  /** The task's function. @default any */
  functionId?: string | undefined;
  /** The task's endpoint. @default any */
  endpointId?: string | undefined;
  /** The task's group (tasks only). @default any */
  groupId?: string | undefined;
  /** Created at or after, epoch seconds. @default any */
  since?: number | undefined;
  /** Created before, epoch seconds. @default any */
  until?: number | undefined;
}

/** Which rows of a search: `limit` rows after skipping `offset`. */
export interface PageRequest {
  limit: number;
  offset: number;
  /** Oldest first instead of newest first. @default false */
  oldestFirst?: boolean;
}

/** One page of a search, and how many rows match in all. */
export interface SearchPage<T> {
  items: T[];
  total: number;
}

/** The service's store. One instance per service process; replicas share one PostgreSQL. */
export interface Store {
  /** Which database this is. */
  readonly kind: "sqlite" | "postgres";

  // ---- users, clients, tokens ----

  /** Creates a user, or returns the existing one with that name. */
  ensureUser(name: string, passwordHash?: string | null): Promise<UserRecord>;
  /** Lists users by name. */
  listUsers(): Promise<UserRecord[]>;
  /** Stores an API client whose secret is already hashed. */
  addClient(id: string, userId: string, secretHash: string, name: string): Promise<void>;
  /** The secret hash and user of a client, or undefined. */
  getClient(id: string): Promise<{ userId: string; secretHash: string } | undefined>;
  /** Stores a token by its hash. */
  addToken(
    hash: string,
    userId: string,
    clientId: string | null,
    expiresAt: number,
    kind?: "access" | "refresh",
  ): Promise<void>;
  /** The user (and client) an unexpired token hash of `kind` belongs to. */
  userForToken(
    hash: string,
    now: number,
    kind?: "access" | "refresh",
  ): Promise<(UserRecord & { clientId: string | null }) | undefined>;
  /** Deletes a token by its hash; whether it existed. Of two racing calls, one gets `true`. */
  deleteToken(hash: string): Promise<boolean>;
  /** Sets a user's password hash. */
  setPassword(userId: string, passwordHash: string): Promise<void>;
  /** A user and its password hash by name. */
  userByName(name: string): Promise<(UserRecord & { passwordHash: string | null }) | undefined>;
  /** Starts a device authorization. */
  addDeviceCode(hash: string, userCode: string, clientId: string, expiresAt: number): Promise<void>;
  /** A device authorization by the hash of its device code. */
  deviceCode(hash: string): Promise<DeviceCodeRecord | undefined>;
  /** A device authorization by its user code. */
  deviceCodeByUserCode(userCode: string): Promise<DeviceCodeRecord | undefined>;
  /** Approves or denies a pending device authorization. */
  decideDeviceCode(
    hash: string,
    status: "approved" | "denied",
    userId: string | null,
  ): Promise<void>;
  /** Records a poll and returns the time of the previous one, in one step. */
  pollDeviceCode(hash: string, now: number): Promise<number>;
  /** Ends a device authorization; whether it existed. Of two racing calls, one gets `true`. */
  deleteDeviceCode(hash: string): Promise<boolean>;

  // ---- functions ----

  /** Stores a function. */
  addFunction(fn: FunctionRecord): Promise<void>;
  /** A function by id. */
  getFunction(id: string): Promise<FunctionRecord | undefined>;

  // ---- containers ----

  /** Registers a container image. */
  addContainer(container: ContainerRecord): Promise<void>;
  /** A container by id. */
  getContainer(id: string): Promise<ContainerRecord | undefined>;

  // ---- endpoints ----

  /**
   * Inserts an endpoint, or refreshes it if `ownerId` owns it and it is not deleted. Returns
   * whether it was written: `false` means another user owns the id, or it was deleted.
   */
  upsertEndpoint(
    ep: Omit<EndpointRecord, "createdAt" | "lastRegisteredAt" | "lockedUntil" | "deleted">,
  ): Promise<boolean>;
  /** An endpoint by id. */
  getEndpoint(id: string): Promise<EndpointRecord | undefined>;
  /** A user's endpoints that are not deleted. */
  listEndpoints(ownerId: string): Promise<EndpointRecord[]>;
  /** Locks an endpoint until `until` (epoch seconds; 0 clears the lock). */
  lockEndpoint(id: string, until: number): Promise<void>;
  /** Marks an endpoint deleted and forgets its allowed functions. */
  deleteEndpoint(id: string): Promise<void>;
  /** Lets other users submit to an endpoint. */
  shareEndpoint(endpointId: string, userIds: readonly string[]): Promise<void>;
  /** Stops sharing an endpoint with a user; whether it was shared. */
  unshareEndpoint(endpointId: string, userId: string): Promise<boolean>;
  /** Whether an endpoint is shared with a user. */
  isSharedWith(endpointId: string, userId: string): Promise<boolean>;
  /** Names of the users an endpoint is shared with. */
  sharedWith(endpointId: string): Promise<string[]>;
  /** Functions an endpoint allows (empty: all). */
  whitelist(endpointId: string): Promise<string[]>;
  /** Adds functions to an endpoint's allow-list. */
  addToWhitelist(endpointId: string, functionIds: readonly string[]): Promise<void>;
  /** Replaces an endpoint's allow-list. */
  replaceWhitelist(endpointId: string, functionIds: readonly string[]): Promise<void>;
  /** Removes a function from an endpoint's allow-list; whether it was there. */
  removeFromWhitelist(endpointId: string, functionId: string): Promise<boolean>;
  /** The live status of an endpoint at `now`, or undefined when it is offline. */
  endpointStatus(endpointId: string, now: number): Promise<EndpointStatus | undefined>;

  // ---- task groups and tasks ----

  /** The owner of a task group, or undefined when it does not exist. */
  taskGroupOwner(id: string): Promise<string | undefined>;
  /** Records that a group's results are forwarded to `queue`. */
  setResultQueue(groupId: string, queue: string): Promise<void>;
  /** Records that a result stream's queue was bound to the group's results at `at` (epoch s). */
  setStreamAttached(groupId: string, at: number): Promise<void>;
  /** The result queue a task's results are forwarded to, if its group has one. */
  resultQueueOf(taskId: string): Promise<string | undefined>;
  /** The result queues of those of `taskIds` whose group has one, by task id. */
  resultQueuesOf(taskIds: readonly string[]): Promise<Map<string, string>>;
  /** Ids of the tasks of a group. */
  taskGroupTasks(groupId: string): Promise<string[]>;
  /**
   * Inserts tasks (and their group if new) in one transaction, all `waiting-for-ep`, with the
   * outbox message of each new task that has one. A task whose id exists already is left alone
   * (a repeated submit inserts nothing twice). Returns the tasks it inserted, or `false`,
   * inserting nothing, when the group belongs to another user.
   */
  addTasks(
    ownerId: string,
    groupId: string,
    tasks: readonly NewTask[],
    options?: AddTasksOptions,
  ): Promise<NewTask[] | false>;
  /**
   * Leases up to `limit` outbox messages whose lease is over at `now` until `leaseUntil`, oldest
   * first; replicas racing for them each get different ones.
   */
  claimOutbox(now: number, leaseUntil: number, limit: number): Promise<OutboxMessage[]>;
  /** Ends the lease of outbox messages (their publish failed): anyone may claim them now. */
  releaseOutbox(taskIds: readonly string[]): Promise<void>;
  /** Deletes outbox messages the broker confirmed. */
  deleteOutbox(taskIds: readonly string[]): Promise<void>;
  /** How many messages wait in the outbox. */
  outboxSize(): Promise<number>;
  /** How many tasks are in each status (for metrics). */
  countTasksByStatus(): Promise<Map<string, number>>;
  /**
   * Where results of `taskIds` go and what the store knows of them, by task id (tasks it does
   * not hold are missing): read once per result batch before the batch is applied.
   */
  resultRoutesOf(taskIds: readonly string[]): Promise<Map<string, ResultRoute>>;
  /** Marks tasks failed with a service-side reason (for example a publish that failed). */
  failTasks(ids: readonly string[], code: string, exception: string): Promise<void>;
  /** A task by id. */
  getTask(id: string): Promise<TaskRecord | undefined>;
  /** Applies results in one transaction; returns how many tasks it completed (the rest: dupes). */
  completeTasks(completions: readonly TaskCompletion[]): Promise<number>;
  /** Moves incomplete tasks to a newer intermediate state. */
  updateStatuses(updates: ReadonlyArray<{ taskId: string; status: string }>): Promise<void>;
  /** Writes a result batch in one transaction; returns how many tasks it completed. */
  applyResults(batch: ResultBatch): Promise<number>;

  // ---- idempotency keys ----

  /**
   * Reserves `request.key` for `request.userId` with an insert that conflicts: of two racing
   * calls one is `reserved`, the other sees the record. An expired key, or an abandoned attempt
   * (lease over) of the same request, is taken over.
   */
  reserveIdempotencyKey(
    request: IdempotencyRequest,
    options: ReserveOptions,
  ): Promise<IdempotencyReservation>;
  /** Stores the response of a reserved attempt; `false` if the hold was lost meanwhile. */
  finishIdempotencyKey(
    hold: IdempotencyHold,
    response: { status: number; body: string },
  ): Promise<boolean>;
  /** Gives up a reservation that has no response to keep (a retry may then do the work). */
  releaseIdempotencyKey(hold: IdempotencyHold): Promise<void>;

  // ---- dashboard sessions and sign-in throttling ----

  /** Stores a session by the hash of its cookie. */
  addSession(hash: string, userId: string, csrf: string, expiresAt: number): Promise<void>;
  /** The unexpired session with that hash. */
  sessionFor(hash: string, now: number): Promise<SessionRecord | undefined>;
  /** Ends a session; whether it existed. */
  deleteSession(hash: string): Promise<boolean>;
  /**
   * Starts a sign-in attempt under each limit, in one transaction: a locked key is left as it
   * is; a key with `countUpFront` counts the attempt now (a new window starts when the last is
   * over) and is locked at once when counted past `maxFailures` (attempts racing).
   */
  countSignIn(limits: readonly AttemptLimit[], now: number): Promise<AttemptVerdict[]>;
  /**
   * Records that an attempt failed, in one transaction: keys without `countUpFront` count it
   * now; a key whose count reached `maxFailures` is locked for `lockS`.
   */
  failSignIn(limits: readonly AttemptLimit[], now: number): Promise<AttemptVerdict[]>;
  /** Records that an attempt succeeded: `key` (the account) starts afresh, lock included. */
  passSignIn(key: string): Promise<void>;

  // ---- dashboard reads ----

  /** A user's functions, newest first. */
  listFunctions(ownerId: string, limit: number): Promise<FunctionRecord[]>;
  /** A user's task groups that have tasks, newest first, with their tasks counted by status. */
  listTaskGroups(ownerId: string, limit: number): Promise<TaskGroupSummary[]>;
  /** One task group with its tasks counted by status, or undefined when it does not exist. */
  taskGroupSummary(groupId: string): Promise<TaskGroupSummary | undefined>;
  /** Tasks of a group without their results, oldest first. */
  listGroupTasks(groupId: string, limit: number): Promise<TaskSummary[]>;
  /** A page of a user's tasks that match `filter`, newest first (or oldest), with the total. */
  searchTasks(
    ownerId: string,
    filter: TaskFilter,
    page: PageRequest,
  ): Promise<SearchPage<TaskSummary>>;
  /**
   * A page of a user's task groups that have a task matching `filter`, newest first, each with
   * all its tasks counted by status, and how many groups match.
   */
  searchTaskGroups(
    ownerId: string,
    filter: TaskFilter,
    page: PageRequest,
  ): Promise<SearchPage<TaskGroupSummary>>;
  /** How many tasks wait for each endpoint to take them (`waiting-for-ep`), by endpoint id. */
  waitingTasks(endpointIds: readonly string[]): Promise<Map<string, number>>;
  /** An endpoint's online periods that end after `since`, oldest first. */
  endpointUptime(endpointId: string, since: number): Promise<UptimeSegment[]>;

  /**
   * Deletes tasks, tokens, device codes and idempotency keys past their expiry (counted), and
   * sessions, sign-in counts and endpoint online periods that are over (not counted).
   */
  purgeExpired(now?: number): Promise<PurgeCounts>;
  /** Closes the database; idempotent. */
  close(): Promise<void>;
}

/** The store could not be opened: the database is unreachable, refused the login, or is not one. */
export class StoreUnavailableError extends Error {
  override name = "StoreUnavailableError";
}
