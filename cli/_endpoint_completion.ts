/**
 * Shell completion for `funcx-endpoint`: scripts for bash, zsh and fish built from the command
 * tree, and `--install-completion`, which adds a line that loads them to the user's shell rc.
 *
 * @module
 */
import { join } from "node:path";
import type { Command } from "commander";

/** Shells with completion scripts. */
export const SHELLS = ["bash", "zsh", "fish"] as const;
/** A supported shell. */
export type Shell = typeof SHELLS[number];

interface Tree {
  commands: { name: string; flags: string[] }[];
  globals: string[];
}

function treeOf(program: Command): Tree {
  const flagsOf = (c: Command) =>
    c.options.filter((o) => !o.hidden).flatMap((o) => [o.short, o.long]).filter((f): f is string =>
      !!f
    );
  return {
    commands: program.commands.filter((c) => !(c as unknown as { _hidden: boolean })._hidden).map((
      c,
    ) => ({
      name: c.name(),
      flags: [...flagsOf(c), "--help"],
    })),
    globals: flagsOf(program),
  };
}

/** The completion script for `shell`. */
export function completionScript(program: Command, shell: Shell): string {
  const t = treeOf(program);
  const bin = program.name();
  const fn = `_${bin.replaceAll("-", "_")}`;
  const names = t.commands.map((c) => c.name).join(" ");
  if (shell === "fish") {
    const lines = [`complete -c ${bin} -f`];
    for (const c of t.commands) {
      lines.push(`complete -c ${bin} -n __fish_use_subcommand -a ${c.name}`);
      for (const f of c.flags.filter((f) => f.startsWith("--"))) {
        lines.push(
          `complete -c ${bin} -n "__fish_seen_subcommand_from ${c.name}" -l ${f.slice(2)}`,
        );
      }
    }
    return lines.join("\n") + "\n";
  }
  const cases = t.commands.map((c) => `    ${c.name}) opts="${c.flags.join(" ")}" ;;`).join("\n");
  const bash = `${fn}() {
  local cur=\${COMP_WORDS[COMP_CWORD]} cmd="" i opts
  for ((i = 1; i < COMP_CWORD; i++)); do
    case \${COMP_WORDS[i]} in -*) ;; *) cmd=\${COMP_WORDS[i]}; break ;; esac
  done
  case $cmd in
    "") opts="${names} ${t.globals.join(" ")}" ;;
${cases}
    *) opts="" ;;
  esac
  if [[ $cmd == start || $cmd == stop || $cmd == restart || $cmd == delete ]] && [[ $cur != -* ]]; then
    opts="$opts $(ls "\${FUNCX_CONFIG_DIR:-$HOME/.funcx}" 2>/dev/null)"
  fi
  COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -F ${fn} ${bin}
`;
  return shell === "zsh" ? `autoload -U +X bashcompinit && bashcompinit\n${bash}` : bash;
}

/** Adds a line loading the completion to the rc file of `shell`; returns the file. */
export async function installCompletion(shell: Shell, bin: string): Promise<string> {
  const home = Deno.env.get("HOME") ?? ".";
  if (shell === "fish") {
    const dir = join(home, ".config", "fish", "completions");
    await Deno.mkdir(dir, { recursive: true });
    const file = join(dir, `${bin}.fish`);
    await Deno.writeTextFile(file, `${bin} completion fish | source\n`);
    return file;
  }
  const file = join(home, shell === "zsh" ? ".zshrc" : ".bashrc");
  const line = `source <(${bin} completion ${shell})`;
  const current = await Deno.readTextFile(file).catch(() => "");
  if (!current.split("\n").includes(line)) {
    await Deno.writeTextFile(file, `${current && !current.endsWith("\n") ? "\n" : ""}${line}\n`, {
      append: true,
    });
  }
  return file;
}

/** The user's shell from `$SHELL`, if supported. */
export function detectShell(): Shell | undefined {
  const name = (Deno.env.get("SHELL") ?? "").split("/").pop() ?? "";
  return (SHELLS as readonly string[]).includes(name) ? name as Shell : undefined;
}
