/**
 * A user endpoint: the process a multi-user endpoint starts for one local account (already
 * switched to it: uid, gid, groups, a clean environment, the account's home as working
 * directory) and one set of template values. It runs an engine (interchange, managers, workers,
 * all as that account) from the `engine` config it is sent, takes tasks on stdin and answers with
 * results on stdout (`user_endpoint_protocol.ts`); its log goes to stderr. It ends when told to,
 * or when stdin ends (its multi-user endpoint is gone), closing its engine first.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { createEngine, type Engine, PoolClosed } from "./engine/mod.ts";
import { FrameWriter, readFrames } from "./engine/frames.ts";
import {
  type FromUserEndpoint,
  type ToUserEndpoint,
  USER_ENDPOINT_PROTOCOL_VERSION,
} from "./user_endpoint_protocol.ts";

const log = getLogger(["funcx", "endpoint", "user"]);

/**
 * Runs a user endpoint on this process's stdin and stdout; returns the exit code. Its caller
 * sends logs to stderr: stdout carries frames only.
 */
export async function userEndpointMain(): Promise<number> {
  const out = new FrameWriter<FromUserEndpoint>(Deno.stdout);
  const frames = readFrames<ToUserEndpoint>(Deno.stdin);
  const first = (await frames.next()).value as ToUserEndpoint | undefined;
  if (first?.type !== "start" || first.protocol !== USER_ENDPOINT_PROTOCOL_VERSION) {
    const message = `Expected a "start" of protocol ${USER_ENDPOINT_PROTOCOL_VERSION}, got ` +
      JSON.stringify(first?.type === "start" ? first.protocol : first?.type ?? null);
    out.send({ type: "fatal", message });
    await out.close();
    return 2;
  }
  let engine: Engine;
  try {
    engine = await createEngine(first.engine);
  } catch (err) {
    out.send({ type: "fatal", message: `Cannot start the engine: ${(err as Error).message}` });
    await out.close();
    return 1;
  }
  log.info("User endpoint {label} (pid {pid}, uid {uid}) ready", {
    label: first.label,
    pid: Deno.pid,
    uid: Deno.uid(),
  });
  out.send({
    type: "ready",
    protocol: USER_ENDPOINT_PROTOCOL_VERSION,
    pid: Deno.pid,
    uid: Deno.uid() ?? -1,
    gid: Deno.gid() ?? -1,
  });
  const stop = () => void engine.close();
  Deno.addSignalListener("SIGTERM", stop);
  try {
    for await (const msg of frames) {
      if (msg.type === "task") {
        const context = { resourceSpecification: msg.resource_specification };
        engine.submit(msg.task_id, msg.buffer, msg.container, context).then(
          (result) => out.send({ type: "result", result }),
          (err) => {
            if (!(err instanceof PoolClosed)) {
              log.error("Task {id} could not be run: {err}", { id: msg.task_id, err: String(err) });
            }
            out.send({ type: "closed", task_id: msg.task_id });
          },
        );
      } else if (msg.type === "cancel") {
        engine.cancel(msg.task_id);
      } else if (msg.type === "status") {
        out.send({ type: "status", status: engine.status() });
      } else if (msg.type === "shutdown") {
        break;
      }
    }
  } catch (err) {
    log.error("Lost the multi-user endpoint: {err}", { err: String(err) });
  } finally {
    Deno.removeSignalListener("SIGTERM", stop);
  }
  log.info("User endpoint {label} stopping", { label: first.label });
  await engine.close();
  await out.close();
  return 0;
}
