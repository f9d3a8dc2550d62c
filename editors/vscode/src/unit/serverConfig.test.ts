import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, test } from "node:test";
import { compactNumber, statusText } from "../format";
import {
  API_KEY_ENV,
  DEFAULT_SETTINGS,
  candidateExecutables,
  expandPath,
  findExecutable,
  initializationOptions,
  notFoundMessage,
  resolveExecutable,
  serverArguments,
  serverEnvironment,
} from "../serverConfig";

const ctx = { home: "/home/ana", workspaceFolder: "/work/proj" };

describe("settings to the server", () => {
  test("only_the_settings_that_are_set_become_initialization_options", () => {
    assert.deepEqual(initializationOptions(DEFAULT_SETTINGS), {});
    assert.deepEqual(
      initializationOptions({
        ...DEFAULT_SETTINGS,
        provider: "openai",
        model: " qwen ",
        baseUrl: "http://127.0.0.1:8080/v1",
        contextLimit: 0,
        outputLimit: 512,
        autoCompact: false,
      }),
      {
        provider: "openai",
        model: "qwen",
        baseUrl: "http://127.0.0.1:8080/v1",
        contextLimit: 0,
        outputLimit: 512,
        autoCompact: false,
      },
    );
  });

  test("the_api_key_never_goes_into_initialization_options_only_the_environment", () => {
    const opts = initializationOptions({ ...DEFAULT_SETTINGS, provider: "openai" });
    assert.ok(!JSON.stringify(opts).includes("sk-secret"));
    assert.ok(!("apiKey" in opts));
    const env = serverEnvironment({ PATH: "/bin" }, "sk-secret");
    assert.equal(env[API_KEY_ENV], "sk-secret");
    assert.equal(env.PATH, "/bin");
    assert.equal(serverEnvironment({ SESSIONLSP_API_KEY: "from-env" }, undefined)[API_KEY_ENV], "from-env");
  });

  test("database_is_passed_as_db_after_the_configured_arguments", () => {
    assert.deepEqual(serverArguments(DEFAULT_SETTINGS, ctx), ["serve"]);
    assert.deepEqual(serverArguments({ ...DEFAULT_SETTINGS, database: "~/s.db" }, ctx), [
      "serve",
      "--db",
      "/home/ana/s.db",
    ]);
  });

  test("paths_expand_home_workspace_and_relative_forms", () => {
    assert.equal(expandPath("${workspaceFolder}/.venv/bin/sessionlsp", ctx), "/work/proj/.venv/bin/sessionlsp");
    assert.equal(expandPath(".venv/bin/sessionlsp", ctx), "/work/proj/.venv/bin/sessionlsp");
    assert.equal(expandPath("sessionlsp", ctx), "sessionlsp");
    assert.equal(expandPath("~/bin/x", ctx), "/home/ana/bin/x");
  });
});

describe("finding the executable", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sessionlsp-exe-"));
  const exe = path.join(dir, "sessionlsp");
  fs.writeFileSync(exe, "#!/bin/sh\n", { mode: 0o755 });
  const plain = path.join(dir, "not-executable");
  fs.writeFileSync(plain, "", { mode: 0o644 });

  test("a_name_is_looked_up_on_path", () => {
    assert.equal(resolveExecutable("sessionlsp", `/nonexistent${path.delimiter}${dir}`), exe);
    assert.equal(resolveExecutable("sessionlsp", "/nonexistent"), undefined);
  });

  test("a_path_must_point_at_an_executable_file", () => {
    assert.equal(resolveExecutable(exe, ""), exe);
    assert.equal(resolveExecutable(plain, ""), undefined);
    assert.equal(resolveExecutable(dir, ""), undefined);
    assert.equal(resolveExecutable(path.join(dir, "missing"), ""), undefined);
  });

  test("the_default_name_not_on_path_is_found_in_the_workspace_venv_then_user_dirs", () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), "sessionlsp-home-"));
    const work = fs.mkdtempSync(path.join(os.tmpdir(), "sessionlsp-work-"));
    const where = { home, workspaceFolder: work };
    assert.equal(findExecutable("sessionlsp", where, "/nonexistent"), undefined);
    const user = path.join(home, ".local", "bin", "sessionlsp");
    fs.mkdirSync(path.dirname(user), { recursive: true });
    fs.writeFileSync(user, "#!/bin/sh\n", { mode: 0o755 });
    assert.deepEqual(findExecutable("sessionlsp", where, "/nonexistent"), { command: user, how: "discovered" });
    const venv = path.join(work, ".venv", "bin", "sessionlsp");
    fs.mkdirSync(path.dirname(venv), { recursive: true });
    fs.writeFileSync(venv, "#!/bin/sh\n", { mode: 0o755 });
    // the workspace's own environment goes first: it is the one the project was set up with
    assert.deepEqual(findExecutable("", where, "/nonexistent"), { command: venv, how: "discovered" });
    assert.deepEqual(findExecutable("sessionlsp", where, dir), { command: exe, how: "setting" });
    assert.equal(candidateExecutables(where)[0], venv);
  });

  test("a_path_the_person_chose_is_never_replaced_by_a_guess", () => {
    const where = { home: os.homedir(), workspaceFolder: undefined };
    assert.equal(findExecutable("/opt/nowhere/sessionlsp", where, dir, () => false), undefined);
    assert.equal(findExecutable("my-sessionlsp", where, "/nonexistent", () => true)?.how, "setting");
  });

  test("the_not_found_message_says_how_to_fix_it", () => {
    const m = notFoundMessage("/opt/x/sessionlsp");
    assert.match(m, /sessionlsp not found at "\/opt\/x\/sessionlsp"/);
    assert.match(m, /pip install <sessionlsp checkout>/);
    assert.match(m, /sessionlsp\.serverPath/);
  });
});

describe("formatting", () => {
  test("token_counts_are_shortened_for_the_status_bar", () => {
    assert.equal(compactNumber(999), "999");
    assert.equal(compactNumber(1234), "1.2k");
    assert.equal(compactNumber(7000), "7k");
    assert.equal(compactNumber(128000), "128k");
    assert.equal(compactNumber(1_500_000), "1.5M");
  });

  test("status_text_shows_state_and_context_use", () => {
    assert.equal(statusText("idle", { tokens: 1234, usable: 7000 }), "$(comment-discussion) idle · 1.2k/7k");
    assert.equal(statusText("compacting", undefined), "$(fold~spin) compacting");
  });
});
