import { spawn } from "node:child_process";

/**
 * Runs `check` while a zombie exists: python forks a child that exits at once and is never
 * waited for, so for the next 1.5 s it is a zombie (exited, not reaped), as tmux or a container's
 * init leaves one. `check` gets the zombie's pid and its sleeping parent's.
 */
export async function withZombie(check: (zombie: number, parent: number) => void): Promise<void> {
  const py = spawn(
    "python3",
    ["-c", "import os,sys,time\npid=os.fork()\nif pid==0: os._exit(0)\nprint(pid, flush=True)\ntime.sleep(1.5)"],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const closed = new Promise((r) => py.once("close", r));
  const line = await new Promise<string>((resolve) => py.stdout.once("data", (d: Buffer) => resolve(String(d))));
  await new Promise((r) => setTimeout(r, 200));
  try {
    check(Number(line.trim()), py.pid!);
  } finally {
    await closed;
  }
}
