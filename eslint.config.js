// Lint runs in `make test`. typescript-eslint's recommended rules plus a ban on
// shell-string process spawning: every child process gets an argv array.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'build/**', '.drover/**', 'eslint.config.js', 'web/dist/**', 'test-output/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-imports': ['error', {
        paths: [{ name: 'node:child_process', importNames: ['exec', 'execSync'], message: 'Never build a shell string: use spawn/execFile with an argv array.' }],
      }],
    },
  },
  // The dashboard runs in the browser.
  { files: ['web/src/**/*.{ts,tsx}'], languageOptions: { globals: { window: 'readonly', document: 'readonly', location: 'readonly', history: 'readonly', fetch: 'readonly', EventSource: 'readonly', WebSocket: 'readonly', TextEncoder: 'readonly', performance: 'readonly', addEventListener: 'readonly', removeEventListener: 'readonly', HTMLElement: 'readonly', HTMLDivElement: 'readonly', HTMLCanvasElement: 'readonly', MessageEvent: 'readonly', FormData: 'readonly', EventTarget: 'readonly' } } },
);
