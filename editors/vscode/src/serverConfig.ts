// What the extension's settings mean for the server process: its command line, its environment
// and its initializationOptions. Pure (node's path and fs only), so the node tests cover it.

import * as fs from "node:fs";
import * as path from "node:path";
import type { InitializationOptions } from "./protocol";

export interface ExtensionSettings {
  serverPath: string;
  serverArgs: string[];
  database: string;
  provider: string;
  model: string;
  baseUrl: string;
  contextLimit: number | null;
  outputLimit: number | null;
  autoCompact: boolean | null;
}

export const DEFAULT_SETTINGS: ExtensionSettings = {
  serverPath: "sessionlsp",
  serverArgs: ["serve"],
  database: "",
  provider: "",
  model: "",
  baseUrl: "",
  contextLimit: null,
  outputLimit: null,
  autoCompact: null,
};

/** The environment variable the server reads the API key from (never initializationOptions). */
export const API_KEY_ENV = "SESSIONLSP_API_KEY";

/** Only the settings that are set: an unset one leaves the config file and environment in charge. */
export function initializationOptions(s: ExtensionSettings): InitializationOptions {
  const out: InitializationOptions = {};
  if (s.provider.trim() !== "") out.provider = s.provider.trim();
  if (s.model.trim() !== "") out.model = s.model.trim();
  if (s.baseUrl.trim() !== "") out.baseUrl = s.baseUrl.trim();
  if (s.contextLimit !== null) out.contextLimit = s.contextLimit;
  if (s.outputLimit !== null) out.outputLimit = s.outputLimit;
  if (s.autoCompact !== null) out.autoCompact = s.autoCompact;
  return out;
}

export interface PathContext {
  home: string;
  /** The first workspace folder, when there is one. */
  workspaceFolder: string | undefined;
}

/** Expand `~` and `${workspaceFolder}`; a relative path with a separator is taken from the workspace. */
export function expandPath(p: string, ctx: PathContext): string {
  let out = p.trim();
  if (ctx.workspaceFolder !== undefined) out = out.split("${workspaceFolder}").join(ctx.workspaceFolder);
  if (out === "~") out = ctx.home;
  else if (out.startsWith("~/")) out = path.join(ctx.home, out.slice(2));
  if (!path.isAbsolute(out) && out.includes("/") && ctx.workspaceFolder !== undefined) {
    out = path.join(ctx.workspaceFolder, out);
  }
  return out;
}

/** The server's arguments: the configured ones, then `--db` when a database is set. */
export function serverArguments(s: ExtensionSettings, ctx: PathContext): string[] {
  const args = [...s.serverArgs];
  if (s.database.trim() !== "") args.push("--db", expandPath(s.database, ctx));
  return args;
}

function isExecutableFile(file: string): boolean {
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) return false;
    fs.accessSync(file, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The absolute path of the executable `command` names, or undefined when there is none: a name
 * without a separator is looked up on `pathEnv`; anything else is checked where it points.
 */
export function resolveExecutable(
  command: string,
  pathEnv: string | undefined,
  isExecutable: (file: string) => boolean = isExecutableFile,
): string | undefined {
  if (command === "") return undefined;
  if (command.includes("/") || command.includes(path.sep)) {
    return isExecutable(command) ? path.resolve(command) : undefined;
  }
  for (const dir of (pathEnv ?? "").split(path.delimiter)) {
    if (dir === "") continue;
    const candidate = path.join(dir, command);
    if (isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/**
 * Where a `sessionlsp` that is not on PATH usually is: the workspace's own virtual environment
 * (a checkout after `./dev`, or a project that pip-installed it), then pip's `--user` and pipx's
 * script directory, then pipx's venvs. The trap: VS Code started from a desktop launcher does not
 * get the shell's PATH, so a person who can run `sessionlsp` in a terminal sees "not found".
 */
export function candidateExecutables(ctx: PathContext): string[] {
  const out: string[] = [];
  if (ctx.workspaceFolder !== undefined) {
    for (const venv of [".venv", "venv"]) out.push(path.join(ctx.workspaceFolder, venv, "bin", "sessionlsp"));
  }
  out.push(
    path.join(ctx.home, ".local", "bin", "sessionlsp"),
    path.join(ctx.home, ".local", "share", "pipx", "venvs", "sessionlsp", "bin", "sessionlsp"),
    path.join(ctx.home, ".local", "pipx", "venvs", "sessionlsp", "bin", "sessionlsp"),
  );
  return out;
}

export interface FoundExecutable {
  command: string;
  /** How it was found: "setting" (as configured, or on PATH) or "discovered" (a usual place). */
  how: "setting" | "discovered";
}

/**
 * The executable to start: the configured one (on PATH or where it points); when the setting is
 * the default name and PATH has no such program, the first usual place that has it.
 */
export function findExecutable(
  configured: string,
  ctx: PathContext,
  pathEnv: string | undefined,
  isExecutable: (file: string) => boolean = isExecutableFile,
): FoundExecutable | undefined {
  const name = configured.trim() === "" ? DEFAULT_SETTINGS.serverPath : configured;
  const direct = resolveExecutable(expandPath(name, ctx), pathEnv, isExecutable);
  if (direct !== undefined) return { command: direct, how: "setting" };
  if (name !== DEFAULT_SETTINGS.serverPath) return undefined; // a path the person chose: no guessing
  const found = candidateExecutables(ctx).find((file) => isExecutable(file));
  return found === undefined ? undefined : { command: found, how: "discovered" };
}

/** The message shown when the executable cannot be found. */
export function notFoundMessage(serverPath: string): string {
  return (
    `sessionlsp not found at "${serverPath}" (nor in the workspace's .venv, ~/.local/bin or pipx): ` +
    "install it with `pip install <sessionlsp checkout>` (or run ./dev in the checkout) " +
    "or set sessionlsp.serverPath to the sessionlsp executable."
  );
}

/**
 * The server's environment: the editor's, with the API key from SecretStorage when one is
 * stored (otherwise SESSIONLSP_API_KEY / OPENAI_API_KEY from the environment apply unchanged).
 */
export function serverEnvironment(
  base: NodeJS.ProcessEnv,
  storedApiKey: string | undefined,
): NodeJS.ProcessEnv {
  const env = { ...base };
  if (storedApiKey !== undefined && storedApiKey !== "") env[API_KEY_ENV] = storedApiKey;
  return env;
}
