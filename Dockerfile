# syntax=docker/dockerfile:1
# Build stage: compile the TypeScript and pack the package exactly as npm would publish it.
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY . .
# Install scripts are skipped (the `node` dev dependency would fetch a second Node 24), and its
# shim is removed so that npm's scripts run the image's own Node.
RUN npm ci --ignore-scripts --no-audit --no-fund && rm -f node_modules/.bin/node && npm run build && mkdir -p pkg && npm pack --ignore-scripts --pack-destination pkg

# The image: the packed package and its production dependencies, nothing else. What the CLI
# needs at run time is what the package holds; a test installs it the same way and runs every
# command from there.
FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /src/pkg ./pkg
# examples/ at the top, for the commands the README and docker-compose.yml show.
RUN npm install --omit=dev --no-audit --no-fund ./pkg/s3csv-*.tgz && rm -rf pkg && ln -s node_modules/s3csv/examples examples
USER node
# The launcher adds the V8 heap settings the workers are measured with.
ENTRYPOINT ["/app/node_modules/.bin/s3csv"]
CMD ["worker"]
