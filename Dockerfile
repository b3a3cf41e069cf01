# syntax=docker/dockerfile:1
# Build stage: production dependencies only. The `node` runtime package is optional and omitted:
# the image already is Node 24.
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund

FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY shared ./shared
COPY worker ./worker
COPY producer ./producer
COPY dev ./dev
COPY examples ./examples
USER node
# The launcher adds the V8 heap settings the workers are measured with.
ENTRYPOINT ["bin/s3csv"]
CMD ["worker"]
