import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// `--debug-all-requests`: logs every request and response with secrets redacted.
struct DebugDumpMiddleware: RouterMiddleware {
    typealias Context = IDPRequestContext
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        var request = request
        let body = (try? await request.collectBody(upTo: context.maxUploadSize)) ?? ByteBuffer()
        let bodyText = String(decoding: body.readableBytesView, as: UTF8.self)
        let type = (request.headers[.contentType] ?? "").lowercased()
        let shownBody = type.contains("json") ? Redaction.json(bodyText) : Redaction.formEncoded(bodyText)
        let headers = request.headers.map {
            "\($0.name.rawName): \(Redaction.header(name: $0.name.rawName, value: $0.value))"
        }
        logger.info(
            "request",
            metadata: [
                "method": "\(request.method.rawValue)", "path": "\(Redaction.url(request.uri.description))",
                "peer": "\(context.peerAddressText ?? "-")", "headers": "\(headers.joined(separator: "; "))",
                "body": "\(shownBody)",
            ])
        var response = try await next(request, context)
        let responseHeaders = response.headers.map {
            "\($0.name.rawName): \(Redaction.header(name: $0.name.rawName, value: $0.value))"
        }
        let isJSON = (response.headers[.contentType] ?? "").contains("json")
        let logger = self.logger
        let status = response.status.code
        logger.info(
            "response", metadata: ["status": "\(status)", "headers": "\(responseHeaders.joined(separator: "; "))"])
        response.body = response.body.map { buffer in
            let text = String(decoding: buffer.readableBytesView, as: UTF8.self)
            logger.info(
                "response body",
                metadata: ["body": "\(isJSON ? Redaction.json(text) : "(\(buffer.readableBytes) bytes)")"])
            return buffer
        }
        return response
    }
}
