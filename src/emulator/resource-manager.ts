import { ApiError, decodeSegment, sendJson } from "./http-util.ts";
import type { ProjectRegistry } from "./projects.ts";
import type { EmulatorService } from "./types.ts";

/** Cloud Resource Manager project lookup: `GET /v1/projects/{id}` and `GET /v3/projects/{id}`. */
export function createResourceManagerService(projects: ProjectRegistry): EmulatorService {
  return {
    async handle(req, res, url) {
      const m = /^\/(v1|v3)\/projects\/([^/:]+)$/.exec(url.pathname);
      if (m === null || req.method !== "GET") return false;
      const id = decodeSegment(m[2]!);
      if (projects.isHidden(id) || !/^[a-z0-9][a-z0-9-]{0,62}$/.test(id)) {
        // What the real API says for a project that does not exist or that you may not see.
        throw new ApiError(403, "forbidden", `The caller does not have permission`, { rpcStatus: "PERMISSION_DENIED" });
      }
      const p = projects.ensure(id);
      if (m[1] === "v1") {
        sendJson(res, 200, {
          projectNumber: p.projectNumber,
          projectId: p.projectId,
          lifecycleState: "ACTIVE",
          name: p.projectId,
          createTime: p.createTime,
        });
      } else {
        sendJson(res, 200, {
          name: `projects/${p.projectNumber}`,
          parent: "organizations/0",
          projectId: p.projectId,
          state: "ACTIVE",
          displayName: p.projectId,
          createTime: p.createTime,
          etag: 'W/"1"',
        });
      }
      return true;
    },
  };
}
