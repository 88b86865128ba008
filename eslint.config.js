// @ts-check
import js from "@eslint/js";
import tseslint from "typescript-eslint";

const GOOGLE_SDKS = ["@google-cloud/*", "google-auth-library", "gaxios"];
const CLI_ONLY = ["yargs", "yargs/*", "ora"];

/**
 * Architecture rules (DESIGN §7): dependencies point inward, nothing imports `src/cli`,
 * only `src/gcp` imports Google SDKs, only `src/cli` imports yargs/ora.
 * @param {string[]} extraPatterns
 */
const restricted = (extraPatterns) => ({
  "no-restricted-imports": [
    "error",
    {
      patterns: [
        { group: ["**/cli/**", "**/cli/*.ts"], message: "Nothing imports src/cli: it is the outermost layer." },
        ...(extraPatterns.length
          ? [{ group: extraPatterns, message: "Layering rule (DESIGN §7): this module may not import that package." }]
          : []),
      ],
    },
  ],
});

export default tseslint.config(
  { ignores: ["dist/**", "node_modules/**", "coverage/**", "scratch/**", "bench-out/**", "demo-out/**", "**/*.d.ts"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      ecmaVersion: 2024,
      sourceType: "module",
      globals: {
        process: "readonly",
        console: "readonly",
        Buffer: "readonly",
        URL: "readonly",
        setTimeout: "readonly",
        clearTimeout: "readonly",
        setInterval: "readonly",
        clearInterval: "readonly",
        AbortController: "readonly",
        AbortSignal: "readonly",
        TextEncoder: "readonly",
        TextDecoder: "readonly",
        fetch: "readonly",
        structuredClone: "readonly",
        performance: "readonly",
        queueMicrotask: "readonly",
        setImmediate: "readonly",
      },
    },
    rules: {
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrorsIgnorePattern: "^_" },
      ],
      "@typescript-eslint/consistent-type-imports": "error",
      "no-console": "off",
    },
  },
  // Everything under src/ except gcp and cli: no Google SDKs, no yargs/ora, no cli imports.
  { files: ["src/**/*.ts"], ignores: ["src/gcp/**", "src/cli/**"], rules: restricted([...GOOGLE_SDKS, ...CLI_ONLY]) },
  // src/gcp may use the Google SDKs but not yargs/ora or cli.
  { files: ["src/gcp/**/*.ts"], rules: restricted(CLI_ONLY) },
  // src/cli may import anything inward.
  { files: ["src/cli/**/*.ts"], rules: { "no-restricted-imports": "off" } },
);
