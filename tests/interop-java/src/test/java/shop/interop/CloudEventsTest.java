package shop.interop;

import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import com.fasterxml.jackson.databind.JsonNode;
import io.cloudevents.CloudEvent;
import io.cloudevents.core.builder.CloudEventBuilder;
import io.cloudevents.core.message.Encoding;
import io.cloudevents.jackson.JsonFormat;
import io.cloudevents.kafka.CloudEventSerializer;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static shop.interop.Interop.*;

/** A CloudEvents producer (the CloudEvents Java SDK's Kafka serializer), binary and structured mode. */
class CloudEventsTest {

    static void send(String key, CloudEvent event, Encoding encoding) throws Exception {
        Properties p = producerProps();
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, CloudEventSerializer.class);
        p.put(CloudEventSerializer.ENCODING_CONFIG, encoding);
        p.put(CloudEventSerializer.EVENT_FORMAT_CONFIG, JsonFormat.CONTENT_TYPE);
        try (KafkaProducer<String, CloudEvent> producer = new KafkaProducer<>(p)) {
            producer.send(new ProducerRecord<>(orderTopic(), key, event)).get();
        }
    }

    static CloudEventBuilder order(String type, String id, String orderId, String product) throws Exception {
        byte[] data = JSON.writeValueAsBytes(Map.of("orderId", orderId,
            "items", List.of(Map.of("productId", product, "quantity", 1))));
        return CloudEventBuilder.v1()
            .withId(id)
            .withType(type)
            .withSource(URI.create("/order-service"))
            .withDataContentType("application/json")
            .withData(data);
    }

    @Test
    void binary_mode_with_the_exact_type_is_answered_and_its_id_is_the_cause() throws Exception {
        String product = id("p");
        String order = id("o");
        String ceId = id("ce");
        stock(product, 5);
        try (Reader outcomes = new Reader(inventoryTopic())) {
            send(order, order("OrderCreatedEvent", ceId, order, product).build(), Encoding.BINARY);
            JsonNode json = json(outcome(outcomes, order));
            assertEquals("InventoryReservedEvent", json.get("eventType").asText());
            assertEquals(ceId, json.get("causationId").asText());
        }
    }

    @Test
    void binary_mode_with_a_reverse_dns_type_is_mapped_by_the_alias_setting() throws Exception {
        String product = id("p");
        String order = id("o");
        stock(product, 5);
        try (Reader outcomes = new Reader(inventoryTopic())) {
            send(order, order("com.shop.order.created", id("ce"), order, product).build(), Encoding.BINARY);
            assertEquals("InventoryReservedEvent", json(outcome(outcomes, order)).get("eventType").asText());
        }
    }

    @Test
    void structured_mode_is_read_from_its_envelope_with_its_extensions() throws Exception {
        String product = id("p");
        String order = id("o");
        String ceId = id("ce");
        String traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        stock(product, 5);
        CloudEvent event = order("OrderCreatedEvent", ceId, order, product)
            .withExtension("correlationid", "corr-" + order)
            .withExtension("traceparent", traceparent)
            .build();
        try (Reader outcomes = new Reader(inventoryTopic())) {
            send(order, event, Encoding.STRUCTURED);
            ConsumerRecord<String, byte[]> answer = outcome(outcomes, order);
            JsonNode json = json(answer);
            assertEquals("InventoryReservedEvent", json.get("eventType").asText());
            assertEquals(ceId, json.get("causationId").asText());
            assertEquals("corr-" + order, json.get("correlationId").asText());
            assertEquals(traceparent, header(answer, "traceparent"));
        }
    }

    @Test
    void structured_mode_is_really_structured() throws Exception {
        // The SDK writes the envelope as the value and says so in content-type: what the service must read.
        String order = id("o");
        try (Reader raw = new Reader(orderTopic())) {
            send(order, order("OrderCreatedEvent", id("ce"), order, id("p")).build(), Encoding.STRUCTURED);
            ConsumerRecord<String, byte[]> sent = raw.await(r -> order.equals(r.key()), "the structured record");
            assertEquals("application/cloudevents+json", header(sent, "content-type").split(";")[0]);
            JsonNode envelope = JSON.readTree(new String(sent.value(), StandardCharsets.UTF_8));
            assertEquals("1.0", envelope.get("specversion").asText());
        }
    }
}
