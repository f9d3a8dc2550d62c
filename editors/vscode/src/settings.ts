// Reads the `sessionlsp.*` settings into the typed ExtensionSettings.

import * as vscode from "vscode";
import { DEFAULT_SETTINGS, type ExtensionSettings } from "./serverConfig";

function nullableInt(value: unknown): number | null {
  return typeof value === "number" && Number.isInteger(value) && value >= 0 ? value : null;
}

export function readSettings(): ExtensionSettings {
  const c = vscode.workspace.getConfiguration("sessionlsp");
  const args = c.get<unknown>("serverArgs");
  const autoCompact = c.get<unknown>("autoCompact");
  return {
    serverPath: c.get<string>("serverPath") ?? DEFAULT_SETTINGS.serverPath,
    serverArgs:
      Array.isArray(args) && args.every((a) => typeof a === "string")
        ? (args as string[])
        : DEFAULT_SETTINGS.serverArgs,
    database: c.get<string>("database") ?? "",
    provider: c.get<string>("provider") ?? "",
    model: c.get<string>("model") ?? "",
    baseUrl: c.get<string>("baseUrl") ?? "",
    contextLimit: nullableInt(c.get<unknown>("contextLimit")),
    outputLimit: nullableInt(c.get<unknown>("outputLimit")),
    autoCompact: typeof autoCompact === "boolean" ? autoCompact : null,
  };
}
