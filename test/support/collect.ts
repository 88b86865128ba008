import v8 from "node:v8";
import vm from "node:vm";

v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;

/**
 * Full collections until the WeakRefs' targets that can go have gone (they clear between turns):
 * for tests that check with WeakRefs that nothing keeps an object alive.
 */
export async function collect(): Promise<void> {
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
}
