// Validate an OpenAPI document (a file) with two validators no one here
// wrote: @apidevtools/swagger-parser and @redocly/cli lint (recommended
// rules).  Prints one JSON line {swagger_parser, redocly: {errors, warnings},
// problems} and exits 1 when either complains.
import SwaggerParser from '@apidevtools/swagger-parser';
import { execFileSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const file = process.argv[2];
const here = dirname(fileURLToPath(import.meta.url));
const out = { swagger_parser: 'valid', redocly: null, problems: [] };

try {
  await SwaggerParser.validate(file);
} catch (e) {
  out.swagger_parser = e.message;
}

let lint;
try {
  lint = execFileSync(join(here, 'node_modules', '.bin', 'redocly'),
    ['lint', file, '--format=json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
} catch (e) {
  lint = e.stdout; // exit 1 when there are errors; the JSON is still printed
}
const report = JSON.parse(lint);
out.redocly = { version: report.version, errors: report.totals.errors, warnings: report.totals.warnings };
out.problems = report.problems.map(p => `${p.severity} ${p.ruleId}: ${p.message} at ${p.location?.[0]?.pointer ?? ''}`);
console.log(JSON.stringify(out));
process.exit(out.swagger_parser === 'valid' && out.redocly.errors === 0 && out.redocly.warnings === 0 ? 0 : 1);
