import { HttpError, PermissionError } from "../core/errors.ts";
import type { HttpClient } from "../net/http-client.ts";

/** Looks up a project's number (to derive its Healthcare service agent). */
export async function projectNumber(client: HttpClient, base: string, projectId: string): Promise<string> {
  try {
    const p = await client.json<{ projectNumber?: unknown }>(
      "GET",
      `${base.replace(/\/+$/, "")}/v1/projects/${encodeURIComponent(projectId)}`,
    );
    if (typeof p?.projectNumber !== "string" || !/^\d+$/.test(p.projectNumber))
      throw new Error(`project ${projectId}: no projectNumber in the response`);
    return p.projectNumber;
  } catch (err) {
    if (err instanceof HttpError && (err.status === 403 || err.status === 404)) {
      throw new PermissionError(
        `cannot look up the project number of ${projectId} (HTTP ${err.status}); it is needed to name its Healthcare service agent`,
        {
          hint: `put "serviceAgent": "service-PROJECT_NUMBER@gcp-sa-healthcare.iam.gserviceaccount.com" in the config (for SIIM: service-38125765871@gcp-sa-healthcare.iam.gserviceaccount.com)`,
        },
      );
    }
    throw err;
  }
}
