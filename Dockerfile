# syntax=docker/dockerfile:1
# Build stage: compile the TypeScript and pack the package exactly as npm would publish it.
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY . .
# Install scripts are skipped (the `node` dev dependency would fetch a second Node 24), and its
# shim is removed so that npm's scripts run the image's own Node.
RUN npm ci --ignore-scripts --no-audit --no-fund && rm -f node_modules/.bin/node && npm run build && mkdir -p pkg && npm pack --ignore-scripts --pack-destination pkg

# The image: the packed package, unpacked in /app, with the production dependencies of the
# project's lockfile (the versions CI ran), nothing else. A test lays out what this builds and
# runs every command from there.
FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /src/pkg ./pkg
COPY --from=build /src/package-lock.json ./
RUN tar -xzf pkg/s3csv-*.tgz --strip-components=1 && rm -rf pkg && npm ci --omit=dev --ignore-scripts --no-audit --no-fund
USER node
# The launcher adds the V8 flags and the glibc mmap threshold the workers are measured with.
ENTRYPOINT ["/app/bin/s3csv"]
CMD ["worker"]
