/**
 * The container routes of `FuncXClient`: registering a container image that functions run in,
 * and reading one back.
 *
 * @module
 */
import type { ClientTransport, RequestOptions } from "./_client_transport.ts";

/**
 * A container image registered with {@linkcode FuncXClient.registerContainer}.
 *
 * @example A registered image
 * ```ts
 * import assert from "node:assert/strict";
 * import type { ContainerInfo } from "@funcx/sdk";
 * const info: ContainerInfo = {
 *   container_id: crypto.randomUUID(),
 *   name: "numpy",
 *   description: "",
 *   container_type: "apptainer",
 *   location: "/images/numpy.sif",
 * };
 * assert.equal(info.container_type, "apptainer");
 * ```
 */
export interface ContainerInfo {
  /** The container's id. */
  container_id: string;
  /** Its name. */
  name: string;
  /** Free-text description. */
  description: string;
  /** The runtime the image is for: `docker`, `podman`, `apptainer`, `singularity` or `custom`. */
  container_type: string;
  /** Where the runtime finds the image (a registry name, a `.sif` path, ...). */
  location: string;
}

/** The container routes, over the client's transport. */
export class ContainerRoutes {
  readonly #transport: ClientTransport;

  /** Routes over `transport`. */
  constructor(transport: ClientTransport) {
    this.#transport = transport;
  }

  /** `POST v2/containers`: the container's id. */
  async registerContainer(
    location: string,
    type: string,
    options: RequestOptions & { name?: string; description?: string } = {},
  ): Promise<string> {
    const body = await this.#transport.request<{ container_id: string }>(
      "post",
      "v2/containers",
      { name: options.name ?? "", location, description: options.description ?? "", type },
      options,
    );
    return body.container_id;
  }

  /** `GET v2/containers/:id/:type`. */
  async getContainer(
    containerId: string,
    type: string,
    options: RequestOptions = {},
  ): Promise<ContainerInfo> {
    const body = await this.#transport.request<{ container: ContainerInfo }>(
      "get",
      `v2/containers/${encodeURIComponent(containerId)}/${encodeURIComponent(type)}`,
      undefined,
      options,
    );
    return body.container;
  }
}
