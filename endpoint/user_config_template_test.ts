import assert from "node:assert/strict";
import { join } from "node:path";
import { ConfigError } from "./config.ts";
import { UserConfigInvalid, UserConfigTemplate } from "./user_config_template.ts";

const TEMPLATE = [
  "# {{ commented | default(1) }} is not a value",
  "engine:",
  "  max_workers_per_node: {{ workers | default(2) }}",
  "  provider:",
  "    type: slurm",
  "    partition: {{ partition }}",
  '    scheduler_options: "#SBATCH --comment=run-by-{{ partition }}"',
  "",
].join("\n");

const SCHEMA = {
  type: "object",
  properties: {
    workers: { type: "integer", minimum: 1, maximum: 8 },
    partition: { type: "string", enum: ["debug", "batch"] },
  },
  required: ["partition"],
  additionalProperties: false,
};

async function files(template: string, schema: unknown) {
  const dir = await Deno.makeTempDir();
  const t = join(dir, "user_config_template.yaml");
  const s = join(dir, "user_config_schema.json");
  await Deno.writeTextFile(t, template);
  await Deno.writeTextFile(s, typeof schema === "string" ? schema : JSON.stringify(schema));
  return { dir, t, s };
}

Deno.test("UserConfigTemplate.render(): values typed into the template, defaults, one hash per value set", async () => {
  const { dir, t, s } = await files(TEMPLATE, SCHEMA);
  const tpl = await UserConfigTemplate.load(t, s);
  const a = await tpl.render({ partition: "debug" });
  assert.equal(a.engine.max_workers_per_node, 2);
  assert.deepEqual(a.values, { workers: 2, partition: "debug" });
  assert.equal(a.engine.provider.type === "slurm" && a.engine.provider.partition, "debug");
  assert.deepEqual(
    a.engine.provider.type === "slurm" && a.engine.provider.scheduler_options,
    ["#SBATCH --comment=run-by-debug"],
  );
  const b = await tpl.render({ partition: "debug", workers: 4 });
  assert.equal(b.engine.max_workers_per_node, 4);
  assert.notEqual(a.valuesHash, b.valuesHash);
  assert.equal((await tpl.render({ workers: 2, partition: "debug" })).valuesHash, a.valuesHash);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("UserConfigTemplate.render(): a value of the wrong type, not allowed or missing is refused, naming the field", async () => {
  const { dir, t, s } = await files(TEMPLATE, SCHEMA);
  const tpl = await UserConfigTemplate.load(t, s);
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ partition: "debug", workers: "2" }, /field "workers": expected an integer, got "2"/],
    [{ partition: "debug", workers: 1.5 }, /field "workers": expected an integer/],
    [{ partition: "debug", workers: 9 }, /field "workers": 9 is above 8/],
    [{ partition: "gpu" }, /field "partition": "gpu" is not one of "debug", "batch"/],
    [{ partition: "debug", account: "x" }, /field "account": is not allowed on this endpoint/],
    [{}, /field "partition": is required/],
    // A value cannot add YAML of its own: it is put in after the template is parsed.
    [{ partition: "debug\nengine: {}" }, /field "partition"/],
  ];
  for (const [values, why] of cases) {
    await assert.rejects(() => tpl.render(values), (err) => {
      assert.ok(err instanceof UserConfigInvalid, String(err));
      assert.match((err as Error).message, why);
      return true;
    });
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("UserConfigTemplate: a bad template or schema is an error naming the file and the field", async () => {
  const cases: Array<[string, unknown, string, RegExp]> = [
    [
      TEMPLATE,
      { ...SCHEMA, properties: { workers: { type: "int" } } },
      "s",
      /properties\.workers\.type/,
    ],
    [TEMPLATE, { ...SCHEMA, requird: [] }, "s", /unknown field "requird"/],
    [TEMPLATE, { ...SCHEMA, required: ["nope"] }, "s", /field "required\.0"/],
    [TEMPLATE, "{not json", "s", /Invalid JSON/],
    [
      "engine:\n  max_workers: {{ w | default(1) }}\n",
      SCHEMA,
      "t",
      /unknown field "engine.max_workers"/,
    ],
    ["engine:\n  max_workers_per_node: {{ w | default(1) }\n", SCHEMA, "t", /placeholder/],
  ];
  for (const [template, schema, which, why] of cases) {
    const { dir, t, s } = await files(template, schema);
    const err = await UserConfigTemplate.load(t, s).then(() => undefined, (e) => e);
    assert.ok(err instanceof ConfigError, `no error for ${JSON.stringify([template, schema])}`);
    assert.equal(err.file, which === "s" ? s : t);
    assert.match(err.message, why);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("UserConfigTemplate: without a schema no values are taken; a file broken while running refuses tasks", async () => {
  const { dir, t, s } = await files("engine:\n  max_workers_per_node: 1\n", SCHEMA);
  await Deno.remove(s);
  const tpl = await UserConfigTemplate.load(t, s);
  assert.equal((await tpl.render(undefined)).engine.max_workers_per_node, 1);
  await assert.rejects(() => tpl.render({ workers: 2 }), /accepts no values/);
  await Deno.writeTextFile(s, JSON.stringify({ type: "object", propertys: {} }));
  await assert.rejects(() => tpl.render(undefined), (err) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /unknown field "propertys"/);
    return true;
  });
  await Deno.remove(dir, { recursive: true });
});
