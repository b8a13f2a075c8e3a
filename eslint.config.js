import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * The direction of imports between the folders of src/ (docs/architecture.md, "Layers"):
 * http → uploads → media/auth → audit → db, storage, scan, images, video, cluster → util. A folder may import
 * from the folders below it and never from one above; the top-level wiring (app.ts, services.ts,
 * main.ts) is imported by nothing in a folder.
 */
const WIRING = ['app', 'services', 'main'];
const ABOVE = {
  util: [
    'audit',
    'auth',
    'cli',
    'cluster',
    'db',
    'http',
    'images',
    'media',
    'scan',
    'storage',
    'uploads',
    'video',
  ],
  db: ['audit', 'auth', 'cli', 'cluster', 'http', 'images', 'media', 'scan', 'storage', 'uploads', 'video'],
  storage: ['audit', 'auth', 'cli', 'cluster', 'db', 'http', 'images', 'media', 'scan', 'uploads', 'video'],
  scan: ['audit', 'auth', 'cli', 'cluster', 'db', 'http', 'images', 'media', 'storage', 'uploads', 'video'],
  images: ['audit', 'auth', 'cli', 'cluster', 'db', 'http', 'media', 'scan', 'storage', 'uploads', 'video'],
  video: ['audit', 'auth', 'cli', 'cluster', 'db', 'http', 'images', 'media', 'scan', 'storage', 'uploads'],
  cluster: ['audit', 'auth', 'cli', 'db', 'http', 'images', 'media', 'scan', 'storage', 'uploads', 'video'],
  audit: ['auth', 'cli', 'cluster', 'http', 'images', 'media', 'scan', 'storage', 'uploads', 'video'],
  auth: ['cli', 'cluster', 'http', 'media', 'uploads'],
  media: ['cli', 'cluster', 'http', 'uploads'],
  uploads: ['cli', 'cluster', 'http'],
  http: ['cli', 'cluster'],
};
export const layers = Object.entries(ABOVE).map(([folder, above]) => ({
  files: [`src/${folder}/**/*.ts`],
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: [
          {
            regex: `^(\\.\\./)+((${above.join('|')})/|(${WIRING.join('|')})\\.ts$)`,
            message: `src/${folder}/ must not import from a layer above it (docs/architecture.md, "Layers").`,
          },
        ],
      },
    ],
  },
}));

export default tseslint.config(
  {
    ignores: [
      'node_modules/',
      '.tools/',
      'data/',
      'coverage/',
      'bench/results/',
      '.scratch/',
      'console/dist/',
      'test-artifacts/',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ['eslint.config.js'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': 'error',
      '@typescript-eslint/consistent-type-imports': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': ['error', { allow: ['warn', 'error'] }],
      // Fastify plugins and handlers are async by contract even when they do not await.
      '@typescript-eslint/require-await': 'off',
    },
  },
  ...layers,
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-non-null-assertion': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      'no-console': 'off',
    },
  },
);
