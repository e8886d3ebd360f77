import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import OIDCProvider

/// `--debug-all-requests`: logs every request and response with secrets redacted.
struct DebugDumpMiddleware: RouterMiddleware {
    typealias Context = IDPRequestContext
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        var request = request
        let body: ByteBuffer
        do {
            body = try await request.collectBody(upTo: context.maxUploadSize)
        } catch {
            return Responses.error(OAuthError(.invalidRequest, "the request body is too large", status: 413))
        }
        let bodyText = String(decoding: body.readableBytesView, as: UTF8.self)
        let type = (request.headers[.contentType] ?? "").lowercased()
        let shownBody: String
        if bodyText.isEmpty {
            shownBody = ""
        } else if type.hasPrefix("application/x-www-form-urlencoded") {
            shownBody = Redaction.formEncoded(bodyText)
        } else if type.contains("json") {
            shownBody = Redaction.json(bodyText)
        } else {
            // Anything else (multipart, a mislabelled body) could hold a secret in any shape.
            shownBody = "(\(body.readableBytes) bytes of \(type.isEmpty ? "unlabelled" : type))"
        }
        let headers = request.headers.map {
            "\($0.name.rawName): \(Redaction.header(name: $0.name.rawName, value: $0.value))"
        }
        logger.info(
            "request",
            metadata: [
                "method": "\(request.method.rawValue)", "path": "\(Redaction.url(request.uri.description))",
                "peer": "\(context.peerDescription)", "caller": "\(context.callerAddress)",
                "headers": "\(headers.joined(separator: "; "))",
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
