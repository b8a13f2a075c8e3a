// Types of eslint.config.js for the test that checks its import-direction rule (test/lint/).
import type { Linter } from 'eslint';

export declare const layers: Linter.Config[];
declare const config: Linter.Config[];
export default config;
